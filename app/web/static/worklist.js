// Worklist: poll the rows every few seconds and replace the table body (no page reload);
// for physicists, update the count of held DICOM series.
"use strict";
(function () {
  const live = document.getElementById("live");
  const body = document.getElementById("worklist-rows");
  if (!live || !body) return;
  const every = Number(live.dataset.pollMs) || 5000;
  // a physicist's count of held DICOM series: in the nav and in the banner above the list
  function showHeld(count) {
    if (count === null) return;
    const n = Number(count);
    const nav = document.getElementById("nav-held-count");
    if (nav) {
      nav.textContent = String(n);
      nav.classList.toggle("some", n > 0);
    }
    const banner = document.getElementById("held-banner");
    const inBanner = document.getElementById("held-banner-count");
    if (banner && inBanner) {
      inBanner.textContent = String(n);
      banner.hidden = n === 0;
    }
  }
  async function poll() {
    try {
      const response = await fetch(live.dataset.rowsUrl, {
        headers: { "X-Requested-By": "poll", Accept: "text/html" },
        credentials: "same-origin",
      });
      if (response.status === 401) {
        window.location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
        return;
      }
      if (response.ok) {
        showHeld(response.headers.get("X-Held-Series"));
        const html = await response.text();
        if (html !== body.dataset.last) {
          body.innerHTML = html;
          body.dataset.last = html;
        }
        live.textContent = "live · " + new Date().toLocaleTimeString();
        live.classList.remove("stale");
      } else {
        live.textContent = "not updating (" + response.status + ")";
        live.classList.add("stale");
      }
    } catch (error) {
      live.textContent = "not updating (no connection)";
      live.classList.add("stale");
    }
    setTimeout(poll, every);
  }
  setTimeout(poll, every);
})();

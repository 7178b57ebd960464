// Worklist: poll the rows every few seconds and replace the table body (no page reload).
"use strict";
(function () {
  const live = document.getElementById("live");
  const body = document.getElementById("worklist-rows");
  if (!live || !body) return;
  const every = Number(live.dataset.pollMs) || 5000;
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

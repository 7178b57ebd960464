"""The physician's review in a real browser (Debian's chromium, driven by Playwright).

Sign in, the live worklist, the review (views, window, slices, nudges by button and arrow key),
signing with the password, the signature on the page and in the API; and the refusals: a wrong
password, a therapist, a forged form without the CSRF token, a form on another site.
"""

from __future__ import annotations

import re
from typing import Any

from e2e_support import PASSWORD, PHYSICIAN, THERAPIST, LiveServer, open_review, sign_in


def adjusted_mm(page: Any, axis: str) -> float:
    text = page.inner_text(f"#adj-{axis}")
    return float(text.split()[0].replace("−", "-"))


def canvas_is_drawn(page: Any, plane: str) -> bool:
    script = """(id) => {
        const c = document.getElementById(id);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let lit = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 60) lit++;
        return c.width > 50 && lit > 0.05 * c.width * c.height;
    }"""
    return bool(page.evaluate(script, f"view-{plane}"))


def test_a_physician_reviews_nudges_and_signs_and_the_worklist_updates_live(
    context: Any, server: LiveServer, shots: Any
) -> None:
    fraction = server.registered_fraction()
    base = fraction["couch_correction"]
    page = context.new_page()
    sign_in(page, server, PHYSICIAN)
    row = page.locator(f'tr[data-fraction-id="{fraction["id"]}"]')
    assert "awaiting review" in row.inner_text()
    assert "beyond 3.0 mm margin" not in row.inner_text()  # −2, −1.5, −3 mm: not beyond
    shots(page, "worklist")
    watcher = context.new_page()  # a second tab keeps the worklist open
    watcher.goto(f"{server.base_url}/worklist")

    open_review(page, fraction["id"])
    assert all(canvas_is_drawn(page, plane) for plane in ("axial", "coronal", "sagittal"))
    shots(page, "opened")
    for control in ("#mode-checker", "#mode-side", "#preset-bone", "#state-before"):
        renders = page.evaluate("window.__review.renders")
        page.click(control)
        assert page.evaluate("window.__review.renders") > renders, control
        assert canvas_is_drawn(page, "axial"), control
    shots(page, "side-by-side-bone-before")
    for control in ("#mode-blend", "#preset-soft", "#state-after"):
        page.click(control)
    assert page.inner_text("#pos-axial") == "+0.0 mm from isocentre"
    page.fill("#slice-axial", str(int(page.get_attribute("#slice-axial", "value")) + 2))
    assert page.inner_text("#pos-axial") != "+0.0 mm from isocentre"
    page.locator("#view-axial").hover()
    page.mouse.wheel(0, -100)

    page.click("#nudge-lateral_mm-plus")
    assert adjusted_mm(page, "lateral_mm") == round(base["lateral_mm"] + 0.5, 2)
    page.locator("#view-axial").hover()
    page.keyboard.press("ArrowRight")  # screen right = patient left = +X lateral when HFS
    page.keyboard.press("ArrowUp")  # screen up in an axial view = anterior = +Z vertical
    assert adjusted_mm(page, "lateral_mm") == round(base["lateral_mm"] + 1.0, 2)
    assert adjusted_mm(page, "vertical_mm") == round(base["vertical_mm"] + 0.5, 2)
    assert adjusted_mm(page, "longitudinal_mm") == round(base["longitudinal_mm"], 2)
    assert page.inner_text("#approve-label") == "Approve the adjusted correction"
    shots(page, "nudged")

    page.fill("#reason", "matched on the vertebral bodies")
    page.fill("#sign-password", PASSWORD)
    page.click("#sign-button")
    page.wait_for_selector(".signature.current")
    signature = page.inner_text(".signature.current")
    assert "Approved adjusted couch correction" in signature
    assert "Dr E2E Physician" in signature and "(dr-e2e)" in signature
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", signature)
    assert "record verified" in signature
    assert page.inner_text("#status-pill") == "approved adjusted"
    shots(page, "signed")

    signoff = server.fraction(fraction["id"])["signoff"]
    assert signoff["decision"] == "approved_adjusted"
    assert signoff["printed_name"] == "Dr E2E Physician"
    assert signoff["couch_correction"]["lateral_mm"] == round(base["lateral_mm"] + 1.0, 2)
    assert signoff["couch_correction"]["vertical_mm"] == round(base["vertical_mm"] + 0.5, 2)
    assert signoff["record_sha256"] in signature
    assert adjusted_mm(page, "lateral_mm") == signoff["couch_correction"]["lateral_mm"]
    watcher.wait_for_function(
        "id => document.querySelector(`tr[data-fraction-id='${id}']`)"
        ".innerText.includes('approved (adjusted)')",
        arg=fraction["id"],
    )


def test_a_wrong_password_signs_nothing(context: Any, server: LiveServer) -> None:
    fraction = server.registered_fraction()
    page = context.new_page()
    sign_in(page, server, PHYSICIAN)
    open_review(page, fraction["id"])
    page.fill("#sign-password", "not my password")
    page.click("#sign-button")
    page.wait_for_selector("#sign-error:not([hidden])")
    assert "wrong user name or password" in page.inner_text("#sign-error")
    assert page.input_value("#sign-password") == ""
    assert page.locator("#no-signature").is_visible()
    assert server.fraction(fraction["id"])["signoff"] is None


def test_a_therapist_reviews_but_cannot_sign(context: Any, server: LiveServer) -> None:
    fraction = server.registered_fraction()
    page = context.new_page()
    sign_in(page, server, THERAPIST)
    open_review(page, fraction["id"])
    assert page.locator("#cannot-sign").is_visible()
    assert page.locator("#sign-form").count() == 0
    status, detail = page.evaluate(
        """async ([url, password]) => {
            const body = new URLSearchParams({
                csrf_token: document.querySelector("input[name=csrf_token]").value,
                password, decision: "approved" });
            const response = await fetch(url, { method: "POST", body });
            return [response.status, (await response.json()).detail];
        }""",
        [f"/review/{fraction['id']}/sign", PASSWORD],
    )
    assert status == 403 and "only a physician can sign" in detail
    assert server.fraction(fraction["id"])["signoff"] is None


def test_a_forged_form_without_the_csrf_token_is_refused(context: Any, server: LiveServer) -> None:
    fraction = server.registered_fraction()
    page = context.new_page()
    sign_in(page, server, PHYSICIAN)
    open_review(page, fraction["id"])
    with page.expect_navigation():
        page.evaluate(
            """([url, password]) => {
                const form = document.createElement("form");
                form.method = "post";
                form.action = url;
                for (const [name, value] of Object.entries({ password, decision: "approved" })) {
                    const input = document.createElement("input");
                    input.name = name;
                    input.value = value;
                    form.appendChild(input);
                }
                document.body.appendChild(form);
                form.submit();
            }""",
            [f"/review/{fraction['id']}/sign", PASSWORD],
        )
    assert "CSRF check failed" in page.content()
    assert server.fraction(fraction["id"])["signoff"] is None

    other_site = context.new_page()  # the same form on another site: the cookie stays home
    other_site.set_content(
        f'<form method="post" action="{server.base_url}/review/{fraction["id"]}/sign">'
        f'<input name="password" value="{PASSWORD}"><input name="decision" value="approved">'
        "</form>"
    )
    with other_site.expect_navigation():
        other_site.evaluate("document.forms[0].submit()")
    assert "your session has ended" in other_site.content()
    assert server.fraction(fraction["id"])["signoff"] is None


def test_nudging_moves_the_mvct_the_way_the_couch_would(context: Any, server: LiveServer) -> None:
    """The registration here is 1.5 mm off along IEC X: three +0.5 mm lateral nudges align the
    images better (the adjusted correction is then the true one), three the other way worse."""
    fraction = server.registered_fraction(lateral_error_mm=-1.5)
    page = context.new_page()
    sign_in(page, server, PHYSICIAN)
    open_review(page, fraction["id"])
    start = page.evaluate("window.__review.mismatch()")
    for _ in range(3):
        page.click("#nudge-lateral_mm-plus")
    towards_truth = page.evaluate("window.__review.mismatch()")
    for _ in range(6):
        page.click("#nudge-lateral_mm-minus")
    away = page.evaluate("window.__review.mismatch()")
    assert towards_truth < start < away, (towards_truth, start, away)
    page.click("#reset-nudge")
    assert page.evaluate("window.__review.mismatch()") == start
    assert page.inner_text("#offset-text") == "no adjustment"

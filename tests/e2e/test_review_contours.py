"""The planning contours on the review page (Chromium): drawn in the structure's colour, moved
with a nudge on the MVCT side, and hidden by the structure's toggle."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import planning_fixtures as pf
import service_fixtures as sf
from e2e_support import PHYSICIAN, LiveServer, open_review, sign_in

from registration.adjustment import adjusted_planning_to_daily
from registration.couch import CouchCorrection, correction_as_planning_to_daily
from registration.frames import PatientPosition
from registration.geometry import LpsPoint, RigidTransformLps

#: the PTV-coloured pixels of the axial view, left (planning) and right (MVCT) half
RED_PIXELS = """([r, g, b]) => {
    const c = document.getElementById('view-axial');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const half = c.width / 2;
    const out = {left: [], right: [], count: 0};
    for (let i = 0; i < d.length; i += 4) {
        if (d[i] !== r || d[i + 1] !== g || d[i + 2] !== b) continue;
        const x = (i / 4) % c.width;
        out.count += 1;
        (x < half ? out.left : out.right).push(x);
    }
    return {left: Math.min(...out.left), right: Math.min(...out.right), count: out.count,
            width: c.width};
}"""


def review_with_structures(
    context: Any, server: LiveServer, tmp_path_factory: Any
) -> tuple[Any, dict[str, Any]]:
    """The course posted with its planning package (RT Structure Set and Plan), a registered
    fraction, and its review page open for the physician."""
    series = server.series
    package = pf.planning_package(series.planning, series.isocenter, tmp_path_factory.mktemp("rt"))
    iso = series.isocenter
    with httpx.Client(base_url=server.base_url, timeout=120) as client:
        response = client.post(
            "/api/v1/courses",
            headers=server.console,
            data={"patient_id": sf.PATIENT_ID, "isocenter": f"{iso.x_mm},{iso.y_mm},{iso.z_mm}"},
            files=sf.upload("planning", series.planning)
            + pf.rt_upload("rtstruct", package.rtstruct)
            + pf.rt_upload("rtplan", package.rtplan),
        )
        assert response.status_code in (200, 201), response.text
    fraction = server.registered_fraction()
    page = context.new_page()
    sign_in(page, server, PHYSICIAN)
    open_review(page, fraction["id"])
    return page, fraction


def test_the_ptv_contour_is_drawn_moves_with_a_nudge_and_its_toggle_hides_it(
    context: Any, server: LiveServer, tmp_path_factory: Any, shots: Any
) -> None:
    page, _ = review_with_structures(context, server, tmp_path_factory)
    ptv = page.locator('input[data-structure="PTV"]')
    assert ptv.is_checked()
    assert page.locator('input[data-structure="SpinalCord"]').is_checked()
    assert not page.locator('input[data-structure="BODY"]').is_checked()
    assert "PTV" in page.inner_text("#residuals")
    shots(page, "blend")
    page.click("#mode-side")
    red = list(pf.PTV_COLOUR)
    before = page.evaluate(RED_PIXELS, red)
    assert before["count"] > 0 and before["left"] < before["width"] / 2 <= before["right"]
    # on the planning CT the PTV's left edge is at the isocentre − 20 mm (radiological: the
    # patient's right on the screen's left)
    nx = page.evaluate("window.__review.size[0]")
    spacing_mm = page.evaluate("window.__review.spacingMm")
    scale = before["width"] / (2 * nx)
    iso_u = page.evaluate("window.__review.isoIndex[0]")
    expected_left = (iso_u - pf.PTV_RADIUS_MM / spacing_mm) * scale
    assert abs(before["left"] - expected_left) <= 2 * scale + 2
    for _ in range(4):  # +2 mm lateral: the MVCT and today's PTV move 2 mm to the patient's left
        page.click("#nudge-lateral_mm-plus")
    after = page.evaluate(RED_PIXELS, red)
    shots(page, "nudged")
    assert after["left"] == before["left"]  # as planned: does not move
    moved_px = after["right"] - before["right"]
    assert abs(moved_px - 2.0 / spacing_mm * scale) <= scale + 1, (moved_px, scale)
    ptv.uncheck()
    assert page.evaluate(RED_PIXELS, red)["count"] == 0


def test_the_residual_at_the_ptv_follows_a_lateral_nudge_of_2_mm(
    context: Any, server: LiveServer, tmp_path_factory: Any
) -> None:
    """The full correction leaves ~0 at the PTV; 2 mm more lateral moves every surface point by
    2 mm (a translation), so the live max and 95th percentile read 2.0 mm."""
    page, fraction = review_with_structures(context, server, tmp_path_factory)
    page.wait_for_function("() => window.__review.targetResiduals !== undefined")
    before = page.evaluate("window.__review.targetResiduals.PTV")
    assert before["maxMm"] < 0.1, before
    cell = page.locator('#residuals td[data-live="PTV"]')
    assert cell.inner_text().endswith(" mm")
    for _ in range(4):  # 4 × 0.5 mm lateral
        page.click("#nudge-lateral_mm-plus")
    after = page.evaluate("window.__review.targetResiduals.PTV")
    assert abs(after["maxMm"] - 2.0) <= 0.1 and abs(after["p95Mm"] - 2.0) <= 0.1, after
    assert cell.inner_text() == "2.0 / 2.0 mm"
    assert abs(float(cell.get_attribute("data-max-mm") or "nan") - 2.0) <= 0.1
    for _ in range(5):  # and a roll of 0.5°, against numpy and registration.adjustment here
        page.click("#nudge-roll_deg-plus")
    live = page.evaluate("window.__review.targetResiduals.PTV")
    expected = expected_residual_mm(page, fraction["id"])
    assert live["maxMm"] > 2.0  # the roll adds to the 2 mm
    assert abs(live["maxMm"] - expected[0]) <= 0.01 and abs(live["p95Mm"] - expected[1]) <= 0.01


def expected_residual_mm(page: Any, fraction_id: int) -> tuple[float, float]:
    """max and p95 of |M_C⁻¹·M·p − p| at the PTV points the page was sent, with M_C the
    registration's correction composed with the nudges by registration.adjustment."""
    config = page.evaluate("JSON.parse(document.getElementById('review-config').textContent)")
    offset = page.evaluate("window.__review.targetOffset")
    origin = page.evaluate("location.origin")
    body = page.request.get(f"{origin}/review/{fraction_id}/structures").json()
    points = np.array(next(t for t in body["targets"] if t["name"] == "PTV")["points_lps_mm"])
    axes = CouchCorrection.AXES
    base = CouchCorrection(**config["base"])
    signed = CouchCorrection(**{a: config["base"][a] + offset[n] for n, a in enumerate(axes)})
    iso = LpsPoint(*config["isocenter"])
    position = PatientPosition(config["patientPosition"])
    m = RigidTransformLps.from_array(np.array(config["planningToDaily"]))
    m_base = correction_as_planning_to_daily(base, iso, position)
    m_c = adjusted_planning_to_daily(m_base, base, signed, iso, position).planning_to_daily_lps
    distance = np.linalg.norm(m.then(m_c.inverse()).apply_array(points) - points, axis=1)
    return float(distance.max()), float(np.percentile(distance, 95))

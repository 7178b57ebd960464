"""Rotation nudges on the review page: 0.1° steps, only for the axes the machine applies."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import review_data
import service_fixtures as sf
from e2e_support import PHYSICIAN, LiveServer, open_review, sign_in

from registration.couch import Dof, couch_correction_6dof
from registration.frames import PatientPosition
from registration.simulate import rigid_about


def test_roll_nudges_on_a_4_dof_machine_align_a_roll_the_registration_missed(
    context: Any, server: LiveServer
) -> None:
    """The MVCT is rolled 0.5° but the stored registration found no roll: nudging roll
    towards the true correction aligns the images better, and only roll has nudge rows."""
    index = server._next_mvct
    while index % 3 == 0:  # MVCT i is rolled by 0.5° × (i mod 3)
        index += 1
    server._next_mvct = index + 1
    iso = server.series.isocenter
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        body = review_data.post_fraction(
            client,
            server.console,
            server.series.mvcts[index],
            planning=server.series.planning,
            patient_id=sf.PATIENT_ID,
            isocenter=f"{iso.x_mm},{iso.y_mm},{iso.z_mm}",
            dof="4",
        )
    truth = server.series.motions[index]
    moved_iso = truth.apply(iso).as_array() - iso.as_array()
    unrolled = rigid_about(iso, np.eye(3), tuple(moved_iso))  # the same shift, no roll
    stored = review_data.known_result(unrolled, iso, PatientPosition.HFS, Dof.TRANSLATIONS_ROLL)
    assert abs(stored["couch_correction"]["roll_deg"]) < 0.01
    review_data.store_result(server.app.state.context, body["id"], stored)
    true_roll_deg = couch_correction_6dof(truth, iso, PatientPosition.HFS).roll_deg
    page = context.new_page()
    sign_in(page, server, PHYSICIAN)
    page.goto(f"{server.base_url}/worklist")
    open_review(page, body["id"])
    assert page.locator("#nudge-roll_deg-plus").count() == 1
    assert page.locator("#nudge-pitch_deg-plus").count() == 0
    assert page.locator("#nudge-yaw_deg-plus").count() == 0
    start = page.evaluate("window.__review.mismatch()")
    towards = "#nudge-roll_deg-plus" if true_roll_deg > 0 else "#nudge-roll_deg-minus"
    steps = round(abs(true_roll_deg) / 0.1)
    for _ in range(steps):
        page.click(towards)
    aligned = page.evaluate("window.__review.mismatch()")
    assert aligned < start, (aligned, start)
    expected = (
        stored["couch_correction"]["roll_deg"] + (1 if true_roll_deg > 0 else -1) * 0.1 * steps
    )
    shown = float(page.inner_text("#adj-roll_deg").split()[0].replace("−", "-"))
    assert abs(shown - expected) < 0.006
    assert "roll" in page.inner_text("#offset-text")

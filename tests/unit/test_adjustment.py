"""The REG after an adjusted sign-off keeps the measured rotations."""

from __future__ import annotations

import numpy as np
import pytest

from registration.adjustment import adjusted_planning_to_daily, correction_difference
from registration.couch import (
    CouchCorrection,
    Dof,
    correction_as_planning_to_daily,
    couch_correction_6dof,
    couch_correction_for_dof,
)
from registration.frames import PatientPosition
from registration.geometry import LpsPoint

ISO = LpsPoint(-20.0, 15.0, 110.0)
MEASURED = CouchCorrection(1.2, -0.8, 2.1, pitch_deg=1.0, roll_deg=0.7, yaw_deg=-0.9)


def nudge(c: CouchCorrection, **delta: float) -> CouchCorrection:
    values = c.as_dict()
    for key, value in delta.items():
        values[key] += value
    return CouchCorrection(**values)


@pytest.mark.parametrize("position", list(PatientPosition))
def test_a_03mm_nudge_on_a_3dof_couch_keeps_the_measured_rotations_within_001_degree(
    position: PatientPosition,
) -> None:
    m = correction_as_planning_to_daily(MEASURED, ISO, position)
    registered = couch_correction_for_dof(m, ISO, position, Dof.TRANSLATIONS)
    signed = nudge(registered, lateral_mm=0.3)
    result = adjusted_planning_to_daily(m, registered, signed, ISO, position)
    after = couch_correction_6dof(result.planning_to_daily_lps, ISO, position)
    for name in ("pitch_deg", "roll_deg", "yaw_deg"):
        assert getattr(after, name) == pytest.approx(getattr(MEASURED, name), abs=0.01)
    assert after.translation.as_array() == pytest.approx(
        MEASURED.translation.as_array() + np.array([0.3, 0.0, 0.0]), abs=1e-9
    )
    assert result.adjusted and "lateral +0.30 mm" in result.description
    # what the old path did: the signed 3-DOF correction as a matrix drops the rotations
    old = couch_correction_6dof(
        correction_as_planning_to_daily(signed, ISO, position), ISO, position
    )
    assert abs(old.pitch_deg - MEASURED.pitch_deg) > 0.9


def test_a_roll_nudge_adds_to_the_measured_roll_and_leaves_the_isocentre_translation() -> None:
    position = PatientPosition.HFS
    m = correction_as_planning_to_daily(MEASURED, ISO, position)
    registered = couch_correction_for_dof(m, ISO, position, Dof.SIX)
    signed = nudge(registered, roll_deg=0.1)
    after = couch_correction_6dof(
        adjusted_planning_to_daily(m, registered, signed, ISO, position).planning_to_daily_lps,
        ISO,
        position,
    )
    assert after.roll_deg == pytest.approx(MEASURED.roll_deg + 0.1, abs=0.01)
    assert after.pitch_deg == pytest.approx(MEASURED.pitch_deg, abs=0.01)
    assert after.translation.as_array() == pytest.approx(MEASURED.translation.as_array(), abs=1e-9)


def test_signing_without_adjustment_returns_the_registration_unchanged() -> None:
    m = correction_as_planning_to_daily(MEASURED, ISO, PatientPosition.FFP)
    result = adjusted_planning_to_daily(m, MEASURED, MEASURED, ISO, PatientPosition.FFP)
    assert result.planning_to_daily_lps == m and not result.adjusted
    assert correction_difference(MEASURED, MEASURED).as_dict() == dict.fromkeys(
        MEASURED.as_dict(), 0.0
    )
    assert np.allclose(result.planning_to_daily_lps.as_array(), m.as_array())

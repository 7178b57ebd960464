"""Machine profiles and the correction each machine applies, on known motions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from registration.couch import CouchCorrection, Dof, correction_as_planning_to_daily
from registration.frames import PatientPosition, lps_to_iec_matrix
from registration.geometry import LpsPoint, RigidTransformLps
from registration.machine import (
    GENERIC_6DOF_COUCH,
    RADIXACT,
    SHIPPED_PROFILES,
    THREE_DOF_COUCH,
    TOMOTHERAPY_HI_ART,
    Actuator,
    Application,
    AxisCapability,
    MachineAxis,
    MachineProfile,
    MachineProfileError,
    profile_for_machine,
)
from registration.machine_correction import (
    NO_MOVE,
    CorrectionFlag,
    correction_for_machine,
    machine_move_lps,
)

ISO = LpsPoint(12.0, -30.0, 45.0)
HFS = PatientPosition.HFS


def motion(correction: CouchCorrection, position: PatientPosition = HFS) -> RigidTransformLps:
    """The anatomy motion that ``correction`` (6-DOF, about the isocentre) exactly undoes."""
    return correction_as_planning_to_daily(correction, ISO, position)


def test_dof_is_derived_from_the_axes_each_shipped_profile_applies() -> None:
    assert TOMOTHERAPY_HI_ART.dof is Dof.TRANSLATIONS_ROLL
    assert RADIXACT.dof is Dof.TRANSLATIONS_ROLL
    assert GENERIC_6DOF_COUCH.dof is Dof.SIX
    assert THREE_DOF_COUCH.dof is Dof.TRANSLATIONS
    assert TOMOTHERAPY_HI_ART.manual_axes == (MachineAxis.LATERAL,)
    assert all(p.source for p in SHIPPED_PROFILES)


@pytest.mark.parametrize("profile", SHIPPED_PROFILES, ids=lambda p: p.name)
def test_every_shipped_profile_survives_a_json_round_trip(profile: MachineProfile) -> None:
    text = json.dumps(profile.to_dict())
    assert MachineProfile.from_dict(json.loads(text)) == profile


def test_a_profile_that_applies_pitch_without_yaw_is_refused_with_the_axes_named() -> None:
    with pytest.raises(MachineProfileError, match=r"\(pitch, roll\)"):
        MachineProfile(
            "odd",
            *(AxisCapability(Actuator.COUCH_TRANSLATION),) * 3,
            pitch=AxisCapability(Actuator.COUCH_ROTATION),
            roll=AxisCapability(Actuator.COUCH_ROTATION),
            yaw=AxisCapability(Actuator.NOT_APPLIED),
        )


def test_a_translation_by_gantry_angle_and_a_zero_limit_are_refused() -> None:
    data = THREE_DOF_COUCH.to_dict()
    data["axes"]["lateral"]["actuator"] = "gantry_start_angle"
    with pytest.raises(MachineProfileError, match="lateral cannot be applied by 'gantry_start"):
        MachineProfile.from_dict(data)
    data = THREE_DOF_COUCH.to_dict()
    data["axes"]["vertical"]["limit_mm"] = 0
    with pytest.raises(MachineProfileError, match=r"vertical limit 0\.0 mm"):
        MachineProfile.from_dict(data)
    with pytest.raises(MachineProfileError, match="cannot be read: KeyError"):
        MachineProfile.from_dict({"name": "x"})


def test_profiles_are_found_by_station_name_before_the_plans_machine_name() -> None:
    assert profile_for_machine(SHIPPED_PROFILES, " radixact ", "Hi-Art") is RADIXACT
    assert profile_for_machine(SHIPPED_PROFILES, "unknown", "HI-ART") is TOMOTHERAPY_HI_ART
    assert profile_for_machine(SHIPPED_PROFILES, None, "") is None


# ---- the correction for each machine -------------------------------------------------------

KNOWN = CouchCorrection(2.0, -3.0, 1.5, pitch_deg=0.8, roll_deg=1.2, yaw_deg=-0.6)


def test_a_6dof_couch_applies_the_measured_correction_exactly() -> None:
    result = correction_for_machine(motion(KNOWN), ISO, HFS, GENERIC_6DOF_COUCH)
    for got, want in zip(result.to_apply.as_dict().values(), KNOWN.as_dict().values(), strict=True):
        assert got == pytest.approx(want, abs=1e-9)
    assert result.flags == ()
    assert max(abs(v) for v in result.residual.as_dict().values()) < 1e-9


def test_a_3dof_couch_applies_the_translation_and_leaves_every_rotation_as_residual() -> None:
    result = correction_for_machine(motion(KNOWN), ISO, HFS, THREE_DOF_COUCH)
    assert (result.to_apply.pitch_deg, result.to_apply.roll_deg, result.to_apply.yaw_deg) == (
        0,
        0,
        0,
    )
    assert result.to_apply.translation.as_array() == pytest.approx([2.0, -3.0, 1.5], abs=1e-9)
    assert CorrectionFlag.NOT_APPLIED_ROTATIONS in result.flags
    # nothing left at the isocentre, the whole rotation left around it
    assert result.residual.translation.as_array() == pytest.approx([0, 0, 0], abs=1e-9)
    residual_angles = [result.residual.pitch_deg, result.residual.roll_deg, result.residual.yaw_deg]
    assert residual_angles == pytest.approx(
        [KNOWN.pitch_deg, KNOWN.roll_deg, KNOWN.yaw_deg], abs=1e-9
    )
    assert result.measured.pitch_deg == pytest.approx(0.8)


def test_a_45_degree_pitch_is_flagged_beyond_the_3_degree_limit_and_not_clipped() -> None:
    pitched = CouchCorrection(1.0, 1.0, 1.0, pitch_deg=4.5, roll_deg=0.0, yaw_deg=0.0)
    result = correction_for_machine(motion(pitched), ISO, HFS, GENERIC_6DOF_COUCH)
    assert result.beyond_limit == (MachineAxis.PITCH,)
    assert CorrectionFlag.BEYOND_LIMIT in result.flags
    assert result.to_apply.pitch_deg == pytest.approx(4.5)
    assert "pitch +4.50 deg is beyond the ±3 deg limit" in result.messages[0]


def test_the_same_pitch_on_tomotherapy_is_not_applied_and_stays_in_the_residual() -> None:
    pitched = CouchCorrection(1.0, 1.0, 1.0, pitch_deg=4.5, roll_deg=0.0, yaw_deg=0.0)
    result = correction_for_machine(
        motion(pitched), ISO, HFS, TOMOTHERAPY_HI_ART, rotation_axis_point=ISO
    )
    assert result.beyond_limit == ()
    assert result.to_apply.pitch_deg == 0.0
    assert result.residual.pitch_deg == pytest.approx(4.5, abs=1e-9)


def test_a_lateral_correction_past_the_tomotherapy_limit_is_flagged_with_its_value() -> None:
    far = CouchCorrection(31.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    result = correction_for_machine(
        motion(far), ISO, HFS, TOMOTHERAPY_HI_ART, rotation_axis_point=ISO
    )
    assert result.beyond_limit == (MachineAxis.LATERAL,)
    assert result.to_apply.lateral_mm == pytest.approx(31.0)


@pytest.mark.parametrize("position", list(PatientPosition))
def test_tomotherapy_roll_about_the_bore_axis_100mm_from_the_isocentre_keeps_the_isocentre(
    position: PatientPosition,
) -> None:
    """Roll +1.5° and a translation; the bore axis 100 mm from the isocentre along table X.

    Hand calculation (table axes, offset P − B = (100, 0, 0), R_c = Ry(1.5°), so
    R_cᵀ·(100, 0, 0) = (100 cos 1.5°, 0, 100 sin 1.5°)):
    (I − R_cᵀ)(P − B) = (100 (1 − cos 1.5°), 0, −100 sin 1.5°) = (0.0343, 0, −2.6177) mm,
    so the machine translation is the 6-DOF one minus that: 0.03 mm less lateral, 2.6 mm more
    vertical (a roll about the axis alone would carry the isocentre 2.6 mm down).
    """
    a = lps_to_iec_matrix(position)
    axis_point = LpsPoint.from_array(ISO.as_array() - a.T @ np.array([100.0, 0.0, 0.0]))
    rolled = CouchCorrection(1.0, -2.0, 0.5, pitch_deg=0.0, roll_deg=1.5, yaw_deg=0.0)
    m = correction_as_planning_to_daily(rolled, ISO, position)
    result = correction_for_machine(m, ISO, position, RADIXACT, rotation_axis_point=axis_point)
    expected_shift = np.array(
        [100.0 * (1 - math.cos(math.radians(1.5))), 0.0, -100.0 * math.sin(math.radians(1.5))]
    )
    assert expected_shift == pytest.approx([0.0343, 0.0, -2.6177], abs=1e-4)
    assert result.to_apply.translation.as_array() == pytest.approx(
        np.array([1.0, -2.0, 0.5]) - expected_shift, abs=1e-9
    )
    assert result.to_apply.roll_deg == pytest.approx(1.5)
    assert result.isocenter_offset_from_axis is not None
    assert result.isocenter_offset_from_axis.lateral_mm == pytest.approx(100.0)
    # independent check: the machine's move (rotation about the axis point) brings every point
    # of today's anatomy back to the plan, so the isocentre stays exactly in place
    move = machine_move_lps(result.to_apply, ISO, position, RADIXACT, axis_point)
    points = ISO.as_array() + np.array([[0, 0, 0], [50, 0, 0], [0, 50, 0], [0, 0, -50.0]])
    assert move.apply_array(m.apply_array(points)) == pytest.approx(points, abs=1e-9)
    assert max(abs(v) for v in result.residual.as_dict().values()) < 1e-9


def test_without_the_bore_axis_the_roll_is_taken_about_the_isocentre_and_said_so() -> None:
    rolled = CouchCorrection(1.0, -2.0, 0.5, 0.0, 1.5, 0.0)
    result = correction_for_machine(motion(rolled), ISO, HFS, TOMOTHERAPY_HI_ART)
    assert CorrectionFlag.ROTATION_AXIS_UNKNOWN in result.flags
    assert result.to_apply.vertical_mm == pytest.approx(0.5)


def test_a_roll_about_the_axis_without_the_extra_translation_misses_the_isocentre() -> None:
    """The error the convention prevents: 100 mm × sin 1.5° = 2.6 mm at the isocentre."""
    a = lps_to_iec_matrix(HFS)
    axis_point = LpsPoint.from_array(ISO.as_array() - a.T @ np.array([100.0, 0.0, 0.0]))
    rolled = CouchCorrection(0.0, 0.0, 0.0, 0.0, 1.5, 0.0)
    naive = machine_move_lps(rolled, ISO, HFS, TOMOTHERAPY_HI_ART, axis_point)
    m = motion(rolled)
    miss_mm = np.linalg.norm(naive.apply(m.apply(ISO)).as_array() - ISO.as_array())
    assert miss_mm == pytest.approx(2.618, abs=1e-3)


def test_under_the_tolerance_no_move_is_made_and_the_small_values_are_kept() -> None:
    small = CouchCorrection(0.3, -0.4, 0.2, 0.0, 0.1, 0.0)
    result = correction_for_machine(motion(small), ISO, HFS, GENERIC_6DOF_COUCH)
    assert result.to_apply == NO_MOVE
    assert not result.moves
    assert result.proposed.lateral_mm == pytest.approx(0.3)
    assert result.residual.lateral_mm == pytest.approx(0.3, abs=1e-9)
    just_over = CouchCorrection(0.51, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert correction_for_machine(motion(just_over), ISO, HFS, GENERIC_6DOF_COUCH).moves


def test_a_manual_axis_is_reported_in_the_profile_not_hidden_in_the_correction() -> None:
    profile = MachineProfile(
        "manual everything",
        *(AxisCapability(Actuator.COUCH_TRANSLATION, Application.MANUAL, 20.0),) * 3,
        pitch=AxisCapability(Actuator.NOT_APPLIED),
        roll=AxisCapability(Actuator.NOT_APPLIED),
        yaw=AxisCapability(Actuator.NOT_APPLIED),
    )
    assert profile.manual_axes == (
        MachineAxis.LATERAL,
        MachineAxis.LONGITUDINAL,
        MachineAxis.VERTICAL,
    )
    result = correction_for_machine(motion(KNOWN), ISO, HFS, profile)
    assert result.to_dict()["to_apply"]["lateral_mm"] == 2.0


def test_the_json_form_keeps_both_the_measured_motion_and_the_machine_correction() -> None:
    rot = Rotation.from_euler("xyz", [1.0, -2.0, 0.5], degrees=True).as_matrix()
    m = RigidTransformLps.from_rotation_translation(rot, np.array([1.0, 2.0, 3.0]))
    data = correction_for_machine(m, ISO, HFS, THREE_DOF_COUCH).to_dict()
    assert set(data) >= {"planning_to_daily_lps", "measured", "proposed", "to_apply", "residual"}
    assert data["measured"]["roll_deg"] != 0.0
    assert data["to_apply"]["roll_deg"] == 0.0
    json.dumps(data)


@settings(max_examples=60, deadline=None)
@given(
    angles=st.tuples(*(st.floats(-5.0, 5.0, allow_nan=False),) * 3),
    shift=st.tuples(*(st.floats(-20.0, 20.0, allow_nan=False),) * 3),
    axis_offset=st.tuples(*(st.floats(-150.0, 150.0, allow_nan=False),) * 3),
    position=st.sampled_from(list(PatientPosition)),
)
def test_whatever_the_motion_and_the_bore_axis_the_tomotherapy_move_puts_the_isocentre_back(
    angles: tuple[float, float, float],
    shift: tuple[float, float, float],
    axis_offset: tuple[float, float, float],
    position: PatientPosition,
) -> None:
    rot = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    m = RigidTransformLps.from_rotation_translation(
        rot, ISO.as_array() + shift - rot @ ISO.as_array()
    )
    axis_point = LpsPoint.from_array(ISO.as_array() + np.array(axis_offset))
    result = correction_for_machine(
        m, ISO, position, TOMOTHERAPY_HI_ART, rotation_axis_point=axis_point
    )
    move = machine_move_lps(result.to_apply, ISO, position, TOMOTHERAPY_HI_ART, axis_point)
    if result.moves:
        assert move.apply(m.apply(ISO)).as_array() == pytest.approx(ISO.as_array(), abs=1e-8)
        assert result.residual.translation.as_array() == pytest.approx([0, 0, 0], abs=1e-8)
    else:
        assert result.to_apply == NO_MOVE

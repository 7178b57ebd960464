"""Frame conversions and the couch-correction sign, checked against independent statements."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from registration.couch import (
    CouchCorrection,
    Dof,
    best_roll_deg,
    correction_as_planning_to_daily,
    couch_correction_6dof,
    couch_correction_for_dof,
)
from registration.errors import UnsupportedPositionError
from registration.frames import (
    PatientPosition,
    iec_angles_from_matrix,
    iec_rotation_matrix,
    lps_to_iec_matrix,
)
from registration.geometry import IecTableVector, LpsPoint, LpsVector, RigidTransformLps

POSITIONS = list(PatientPosition)
angles = st.floats(min_value=-20.0, max_value=20.0, allow_nan=False)
mm = st.floats(min_value=-50.0, max_value=50.0, allow_nan=False)
positions = st.sampled_from(POSITIONS)

# Which LPS axis (and sign) each IEC 61217 table axis is, per patient position, written out
# independently of frames.py from the two standards' definitions: DICOM LPS (PS3.3 C.7.6.2.1.1:
# +x to the patient's left, +y posterior, +z head) and IEC 61217 table axes (+X to the right of
# an observer at the foot of the couch facing the gantry, +Y towards the gantry, +Z up).
POSITION_TABLE = {
    "HFS": {"lateral": (+1, 0), "longitudinal": (+1, 2), "vertical": (-1, 1)},
    "HFP": {"lateral": (-1, 0), "longitudinal": (+1, 2), "vertical": (+1, 1)},
    "FFS": {"lateral": (-1, 0), "longitudinal": (-1, 2), "vertical": (-1, 1)},
    "FFP": {"lateral": (+1, 0), "longitudinal": (-1, 2), "vertical": (+1, 1)},
}


@pytest.mark.parametrize("position", POSITIONS)
def test_lps_to_iec_matches_the_domain_table_axis_by_axis(position: PatientPosition) -> None:
    for axis_name, (sign, lps_axis) in POSITION_TABLE[position.value].items():
        v = np.zeros(3)
        v[lps_axis] = 1.0
        iec = LpsVector.from_array(v).to_iec(position)
        expected = {"lateral": 0.0, "longitudinal": 0.0, "vertical": 0.0, axis_name: float(sign)}
        assert iec == IecTableVector(
            expected["lateral"], expected["longitudinal"], expected["vertical"]
        )


@pytest.mark.parametrize("position", POSITIONS)
def test_every_mapping_is_a_proper_rotation(position: PatientPosition) -> None:
    a = lps_to_iec_matrix(position)
    assert np.allclose(a @ a.T, np.eye(3))
    assert np.linalg.det(a) == pytest.approx(1.0)


def test_supine_patient_anterior_is_table_up() -> None:
    anterior = LpsVector(0.0, -1.0, 0.0)  # -y is anterior in LPS
    assert anterior.to_iec(PatientPosition.HFS).vertical_mm == 1.0
    assert anterior.to_iec(PatientPosition.FFS).vertical_mm == 1.0
    assert anterior.to_iec(PatientPosition.HFP).vertical_mm == -1.0


@pytest.mark.parametrize("text", ["", "HFDL", "hfx", None])
def test_unsupported_patient_positions_are_refused_with_the_supported_list(
    text: str | None,
) -> None:
    with pytest.raises(UnsupportedPositionError, match="HFS, HFP, FFS, FFP"):
        PatientPosition.parse(text)


def test_patient_position_parse_accepts_lower_case_and_spaces() -> None:
    assert PatientPosition.parse(" ffp ") is PatientPosition.FFP


@given(positions, mm, mm, mm)
def test_lps_iec_round_trip_is_identity(
    position: PatientPosition, x: float, y: float, z: float
) -> None:
    v = LpsVector(x, y, z)
    back = v.to_iec(position).to_lps(position)
    assert np.allclose(back.as_array(), v.as_array())


@given(angles, angles, angles)
def test_iec_angles_round_trip(pitch: float, roll: float, yaw: float) -> None:
    r = iec_rotation_matrix(pitch, roll, yaw)
    assert np.allclose(iec_angles_from_matrix(r), (pitch, roll, yaw), atol=1e-9)


@given(angles, angles, angles)
def test_iec_rotation_order_agrees_with_scipy_intrinsic_z_x_y(
    pitch: float, roll: float, yaw: float
) -> None:
    # Independent reference: yaw about Z, then pitch about the new X, then roll about the new Y.
    reference = Rotation.from_euler("ZXY", [yaw, pitch, roll], degrees=True).as_matrix()
    assert np.allclose(iec_rotation_matrix(pitch, roll, yaw), reference)


def test_positive_rotations_are_right_handed() -> None:
    # +90 deg yaw about +Z takes +X to +Y; +90 pitch takes +Y to +Z; +90 roll takes +Z to +X.
    assert np.allclose(iec_rotation_matrix(0, 0, 90) @ [1, 0, 0], [0, 1, 0])
    assert np.allclose(iec_rotation_matrix(90, 0, 0) @ [0, 1, 0], [0, 0, 1])
    assert np.allclose(iec_rotation_matrix(0, 90, 0) @ [0, 0, 1], [1, 0, 0])


def _random_rigid(
    rx: float, ry: float, rz: float, t: tuple[float, float, float]
) -> RigidTransformLps:
    r = Rotation.from_euler("xyz", [rx, ry, rz], degrees=True).as_matrix()
    return RigidTransformLps.from_rotation_translation(r, np.array(t))


@given(angles, angles, angles, mm, mm, mm)
def test_rigid_inverse_of_inverse_and_composition(
    rx: float, ry: float, rz: float, x: float, y: float, z: float
) -> None:
    m = _random_rigid(rx, ry, rz, (x, y, z))
    assert np.allclose(m.inverse().inverse().as_array(), m.as_array())
    assert np.allclose(m.then(m.inverse()).as_array(), np.eye(4), atol=1e-9)
    p = LpsPoint(10.0, -20.0, 30.0)
    assert np.allclose(m.then(m).apply(p).as_array(), m.apply(m.apply(p)).as_array())


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("axis", ["lateral_mm", "longitudinal_mm", "vertical_mm"])
def test_anatomy_moved_plus_3mm_on_an_iec_axis_needs_minus_3mm_of_couch(
    position: PatientPosition, axis: str
) -> None:
    shift = {"lateral_mm": 0.0, "longitudinal_mm": 0.0, "vertical_mm": 0.0, axis: 3.0}
    d_lps = IecTableVector(**shift).to_lps(position)
    m = RigidTransformLps.from_rotation_translation(np.eye(3), d_lps.as_array())
    c = couch_correction_6dof(m, LpsPoint(12.0, -40.0, 100.0), position)
    expected = {k: -v for k, v in shift.items()}
    assert c.lateral_mm == pytest.approx(expected["lateral_mm"], abs=1e-12)
    assert c.longitudinal_mm == pytest.approx(expected["longitudinal_mm"], abs=1e-12)
    assert c.vertical_mm == pytest.approx(expected["vertical_mm"], abs=1e-12)
    assert (c.pitch_deg, c.roll_deg, c.yaw_deg) == pytest.approx((0.0, 0.0, 0.0), abs=1e-12)


@given(positions, angles, angles, angles, mm, mm, mm)
@settings(max_examples=200)
def test_applying_the_6dof_correction_puts_every_point_back_on_the_plan(
    position: PatientPosition, rx: float, ry: float, rz: float, x: float, y: float, z: float
) -> None:
    m = _random_rigid(rx, ry, rz, (x, y, z))
    iso = LpsPoint(5.0, -30.0, 80.0)
    c = couch_correction_6dof(m, iso, position)
    # Independent application of the correction in table axes: translate, then rotate about iso.
    a = lps_to_iec_matrix(position)
    r_table = iec_rotation_matrix(c.pitch_deg, c.roll_deg, c.yaw_deg)
    rng = np.random.default_rng(0)
    plan_points = iso.as_array() + rng.uniform(-60, 60, size=(20, 3))
    today = m.apply_array(plan_points)
    iso_iec = a @ iso.as_array()
    today_iec = today @ a.T
    corrected_iec = (today_iec + c.translation.as_array() - iso_iec) @ r_table.T + iso_iec
    assert np.allclose(corrected_iec @ a, plan_points, atol=1e-9)


@given(positions, angles, angles, angles, mm, mm, mm)
def test_correction_to_matrix_round_trip(
    position: PatientPosition, rx: float, ry: float, rz: float, x: float, y: float, z: float
) -> None:
    m = _random_rigid(rx, ry, rz, (x, y, z))
    iso = LpsPoint(-15.0, 20.0, -60.0)
    c = couch_correction_6dof(m, iso, position)
    back = correction_as_planning_to_daily(c, iso, position)
    assert np.allclose(back.as_array(), m.as_array(), atol=1e-9)


@pytest.mark.parametrize("position", POSITIONS)
def test_dof3_keeps_the_translation_at_the_isocentre_and_zeroes_angles(
    position: PatientPosition,
) -> None:
    m = _random_rigid(2.0, -1.0, 1.5, (4.0, -2.0, 1.0))
    iso = LpsPoint(30.0, 10.0, -20.0)
    full = couch_correction_6dof(m, iso, position)
    three = couch_correction_for_dof(m, iso, position, Dof.TRANSLATIONS)
    assert (three.pitch_deg, three.roll_deg, three.yaw_deg) == (0.0, 0.0, 0.0)
    assert three.translation == full.translation
    # the refit is the least-squares translation over a sphere about the isocentre
    pts = iso.as_array() + np.random.default_rng(1).normal(size=(20000, 3)) * 20
    a = lps_to_iec_matrix(position)
    best_t_lps = -np.mean(m.apply_array(pts) - pts, axis=0)
    assert np.allclose(a @ best_t_lps, three.translation.as_array(), atol=0.05)


@pytest.mark.parametrize("position", POSITIONS)
def test_dof4_keeps_roll_only_and_it_is_the_least_squares_roll(position: PatientPosition) -> None:
    a = lps_to_iec_matrix(position)
    # anatomy rotated 2 deg about the table's longitudinal axis plus small pitch and yaw
    r_table = iec_rotation_matrix(0.7, 2.0, -0.5)
    r_lps = a.T @ r_table @ a
    m = RigidTransformLps.from_rotation_translation(r_lps, np.zeros(3))
    four = couch_correction_for_dof(m, LpsPoint(0, 0, 0), position, Dof.TRANSLATIONS_ROLL)
    assert four.pitch_deg == 0.0 and four.yaw_deg == 0.0
    # brute-force least squares over roll angles (independent of the closed form)
    rng = np.random.default_rng(2)
    pts = rng.normal(size=(5000, 3)) * 30
    today = pts @ r_table.T
    grid = np.linspace(-4, 4, 8001)
    from registration.frames import rot_y

    cost = [np.sum((today @ rot_y(g).T - pts) ** 2) for g in grid[::10]]
    coarse = grid[::10][int(np.argmin(cost))]
    assert four.roll_deg == pytest.approx(coarse, abs=0.01)
    assert four.roll_deg == pytest.approx(-2.0, abs=0.1)


def test_best_roll_recovers_a_pure_roll() -> None:
    assert best_roll_deg(iec_rotation_matrix(0, 3.3, 0)) == pytest.approx(3.3)


def test_rounding_never_prints_minus_zero() -> None:
    c = CouchCorrection(-0.0001, 0.0, 1.234567, -0.0001, 0.0, 0.0).rounded()
    assert str(c.lateral_mm) == "0.0" and str(c.pitch_deg) == "0.0"


def test_isocentre_text_is_parsed_or_refused_clearly() -> None:
    assert LpsPoint.parse("1, -2.5,3") == LpsPoint(1.0, -2.5, 3.0)
    with pytest.raises(ValueError, match="three comma-separated numbers"):
        LpsPoint.parse("1,2")
    with pytest.raises(ValueError, match="non-finite"):
        LpsPoint.parse("1,2,nan")


def test_rigid_transform_refuses_a_reflection() -> None:
    with pytest.raises(ValueError, match="proper rotation"):
        RigidTransformLps.from_array(np.diag([1.0, 1.0, -1.0, 1.0]))

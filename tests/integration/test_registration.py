"""Known-motion registrations on real CTs with simulated MVCTs (elastix runs for real).

Sign convention under test (registration.couch): the anatomy moved by d at the isocentre;
the couch correction is -d, expressed in IEC 61217 table axes for the patient position.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from registration.couch import Dof
from registration.dicom_series import read_ct_series, read_volume
from registration.dicom_write import write_ct_series
from registration.errors import InputError
from registration.frames import PatientPosition, lps_to_iec_matrix, rot_x, rot_y, rot_z
from registration.geometry import IecTableVector, LpsPoint, RigidTransformLps
from registration.result import Mode, RegistrationOptions, SphereRoi
from registration.rigid import prepare_planning, register
from registration.simulate import MvctSimulationOptions, rigid_about, simulate_mvct
from registration.volume import CtVolume

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
THORAX = DATA / "thorax_4dct_phase00_dicom"
IBSI = DATA / "ibsi1_ct_lung_dicom"
ABDOMEN = DATA / "small_volumes" / "totalsegmentator_example_ct.nii.gz"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not THORAX.is_dir(), reason=f"real CT data not found at {DATA}"),
]

# the pixel-grid orientation a scanner typically writes for each position (DICOMOrient codes:
# the direction each index axis increases towards)
ORIENTATION = {
    PatientPosition.HFS: "LPS",
    PatientPosition.HFP: "RAS",
    PatientPosition.FFS: "RPI",
    PatientPosition.FFP: "LAI",
}
ISO = LpsPoint(0.0, 40.0, -40.0)  # inside the thorax (mediastinum)
SIM = MvctSimulationOptions(pixel_spacing_mm=1.0, scan_center=ISO, random_seed=3)


@pytest.fixture(scope="module")
def thorax() -> CtVolume:
    volume = read_ct_series(THORAX)
    small = sitk.BinShrink(volume.image, [2, 2, 1])  # 1.95 × 1.95 × 2 mm keeps the tests quick
    return CtVolume(small, volume.patient_position, series_instance_uid="thorax")


@pytest.fixture(scope="module")
def planning_in_position(thorax: CtVolume, tmp_path_factory: pytest.TempPathFactory):
    """The thorax written as a DICOM series in each patient position and read back."""
    cache: dict[PatientPosition, CtVolume] = {}

    def get(position: PatientPosition) -> CtVolume:
        if position not in cache:
            folder = tmp_path_factory.mktemp(position.value)
            image = sitk.DICOMOrient(thorax.image, ORIENTATION[position])
            write_ct_series(image, folder, patient_position=position, patient_id="SIGN")
            cache[position] = read_ct_series(folder)
        return cache[position]

    return get


def _daily(planning: CtVolume, motion: RigidTransformLps, **changes: object) -> CtVolume:
    options = dataclasses.replace(SIM, **changes)  # type: ignore[arg-type]
    return CtVolume(simulate_mvct(planning.image, motion, options), planning.patient_position)


def _tre_mm(found: RigidTransformLps, truth: RigidTransformLps, center: LpsPoint) -> float:
    g = np.linspace(-50, 50, 11)
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    pts = pts[np.sum(pts**2, axis=1) <= 2500] + center.as_array()
    return float(np.max(np.linalg.norm(found.apply_array(pts) - truth.apply_array(pts), axis=1)))


@pytest.mark.parametrize("position", list(PatientPosition))
@pytest.mark.parametrize("axis", ["lateral_mm", "longitudinal_mm", "vertical_mm"])
def test_phantom_moved_3mm_along_an_iec_axis_gives_minus_3mm_on_that_axis_only(
    planning_in_position, position: PatientPosition, axis: str
) -> None:
    planning = planning_in_position(position)
    assert planning.patient_position is position
    shift = {"lateral_mm": 0.0, "longitudinal_mm": 0.0, "vertical_mm": 0.0, axis: 3.0}
    d_lps = IecTableVector(**shift).to_lps(position).as_array()
    motion = RigidTransformLps.from_rotation_translation(np.eye(3), d_lps)

    result = register(planning, _daily(planning, motion), RegistrationOptions(isocenter=ISO))

    c = result.couch_correction
    got = {
        "lateral_mm": c.lateral_mm,
        "longitudinal_mm": c.longitudinal_mm,
        "vertical_mm": c.vertical_mm,
    }
    for name, value in got.items():
        assert value == pytest.approx(-shift[name], abs=0.3), (name, got)
    assert max(abs(c.pitch_deg), abs(c.roll_deg), abs(c.yaw_deg)) < 0.3
    assert result.trusted, result.warnings


@pytest.mark.parametrize("position", list(PatientPosition))
def test_a_roll_of_the_patient_is_undone_by_the_opposite_couch_roll(
    planning_in_position, position: PatientPosition
) -> None:
    planning = planning_in_position(position)
    a = lps_to_iec_matrix(position)
    # anatomy rolled +2° about the table's longitudinal axis (IEC Y) through the isocentre
    motion = rigid_about(ISO, a.T @ rot_y(2.0) @ a, np.zeros(3))

    result = register(planning, _daily(planning, motion), RegistrationOptions(isocenter=ISO))

    assert result.couch_correction.roll_deg == pytest.approx(-2.0, abs=0.15)
    assert result.couch_correction.translation_length_mm() < 0.3


def test_known_6dof_motion_is_recovered_within_half_a_millimetre(thorax: CtVolume) -> None:
    truth = rigid_about(ISO, rot_z(2.5) @ rot_x(-1.5) @ rot_y(1.0), np.array([6.0, -4.0, 9.0]))
    result = register(thorax, _daily(thorax, truth, noise_hu=55.0, slice_spacing_mm=6.0))
    assert _tre_mm(result.planning_to_daily_lps, truth, ISO) < 0.5
    assert result.quality.second_estimate_disagreement_mm is not None
    assert result.quality.second_estimate_disagreement_mm < 1.0
    assert result.quality.overlap_fraction > 0.95


def test_capture_range_covers_25mm_and_5_degrees(thorax: CtVolume) -> None:
    truth = rigid_about(ISO, rot_z(5.0) @ rot_x(-5.0), np.array([-25.0, 15.0, 25.0]))
    result = register(thorax, _daily(thorax, truth), RegistrationOptions(isocenter=ISO))
    assert _tre_mm(result.planning_to_daily_lps, truth, ISO) < 1.0
    # beyond 20 mm the answer is right but must be looked at by a human
    assert not result.trusted
    assert any("exceeds 20 mm" in w for w in result.warnings)


def test_the_same_images_always_give_the_same_answer(thorax: CtVolume) -> None:
    truth = rigid_about(ISO, rot_z(1.0), np.array([2.0, 2.0, -3.0]))
    prepared = prepare_planning(thorax)
    daily = _daily(thorax, truth)
    first = register(prepared, daily, RegistrationOptions(isocenter=ISO))
    second = register(prepared, daily, RegistrationOptions(isocenter=ISO))
    assert first.planning_to_daily_lps == second.planning_to_daily_lps


@pytest.mark.parametrize("mode", list(Mode))
def test_every_mode_recovers_a_known_motion(thorax: CtVolume, mode: Mode) -> None:
    truth = rigid_about(ISO, rot_z(-1.5), np.array([-3.0, 5.0, 4.0]))
    result = register(thorax, _daily(thorax, truth), RegistrationOptions(isocenter=ISO, mode=mode))
    assert _tre_mm(result.planning_to_daily_lps, truth, ISO) < 0.75
    assert result.mode is mode


def test_a_region_of_interest_around_the_isocentre_is_enough(thorax: CtVolume) -> None:
    truth = rigid_about(ISO, rot_x(1.0), np.array([4.0, -2.0, 3.0]))
    roi = SphereRoi(ISO, 60.0)
    result = register(thorax, _daily(thorax, truth), RegistrationOptions(isocenter=ISO, roi=roi))
    assert _tre_mm(result.planning_to_daily_lps, truth, ISO) < 0.75


@pytest.mark.parametrize("dof", [Dof.TRANSLATIONS, Dof.TRANSLATIONS_ROLL])
def test_fewer_dof_keep_all_six_values_and_zero_the_uncorrectable_angles(
    thorax: CtVolume, dof: Dof
) -> None:
    truth = rigid_about(ISO, rot_z(2.0) @ rot_x(1.5), np.array([3.0, -2.0, 4.0]))
    result = register(thorax, _daily(thorax, truth), RegistrationOptions(isocenter=ISO, dof=dof))
    c, full = result.couch_correction, result.couch_correction_6dof
    assert (c.pitch_deg, c.yaw_deg) == (0.0, 0.0)
    assert abs(full.pitch_deg) > 1.0 and abs(full.roll_deg) > 1.5
    assert c.translation == full.translation
    if dof is Dof.TRANSLATIONS:
        assert c.roll_deg == 0.0
    else:
        assert c.roll_deg == pytest.approx(full.roll_deg, abs=0.1)
    assert result.to_dict()["dof"] == int(dof)


def test_a_planning_ct_smaller_than_the_mvct_field_of_view_still_registers() -> None:
    planning = read_ct_series(IBSI)  # a 200 mm crop around a lung tumour; the MVCT sees 400 mm
    size = planning.image.GetSize()
    center = LpsPoint.from_array(
        planning.image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in size])
    )
    truth = rigid_about(center, rot_z(1.5), np.array([4.0, 3.0, -5.0]))
    options = MvctSimulationOptions(scan_center=center, scan_length_mm=100.0, random_seed=5)
    daily = CtVolume(simulate_mvct(planning.image, truth, options), planning.patient_position)
    result = register(planning, daily, RegistrationOptions(isocenter=center))
    assert _tre_mm(result.planning_to_daily_lps, truth, center) < 0.75


@pytest.mark.skipif(not ABDOMEN.exists(), reason=f"{ABDOMEN} not found")
def test_a_research_format_planning_ct_registers_with_an_explicit_position() -> None:
    planning = read_volume(ABDOMEN, patient_position="HFS")
    size = planning.image.GetSize()
    center = LpsPoint.from_array(
        planning.image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in size])
    )
    truth = rigid_about(center, rot_x(-2.0), np.array([-5.0, 2.0, 6.0]))
    options = MvctSimulationOptions(scan_center=center, scan_length_mm=120.0, random_seed=9)
    daily = CtVolume(simulate_mvct(planning.image, truth, options), PatientPosition.HFS)
    result = register(planning, daily, RegistrationOptions(isocenter=center))
    assert _tre_mm(result.planning_to_daily_lps, truth, center) < 0.75
    assert any("research format" in w for w in result.warnings)


def test_a_planning_ct_that_does_not_cover_the_mvct_is_refused(thorax: CtVolume) -> None:
    image = thorax.image
    top = image[:, :, image.GetSize()[2] - 20 :]  # the top 40 mm of the thorax only
    planning = CtVolume(top, thorax.patient_position)
    daily = _daily(thorax, RigidTransformLps.identity())  # scanned around z = -40
    with pytest.raises(InputError, match="does not cover the MVCT"):
        register(planning, daily)


def test_a_patient_position_mismatch_is_refused(thorax: CtVolume) -> None:
    daily = _daily(thorax, RigidTransformLps.identity())
    prone = CtVolume(daily.image, PatientPosition.HFP)
    with pytest.raises(InputError, match="patient position must be the same"):
        register(thorax, prone)


def test_without_an_isocentre_the_mvct_centre_is_used_and_said(thorax: CtVolume) -> None:
    result = register(thorax, _daily(thorax, RigidTransformLps.identity()))
    assert any("no isocentre given" in w for w in result.warnings)
    assert result.couch_correction.translation_length_mm() < 0.3


def test_an_unconverged_match_is_not_trusted(
    thorax: CtVolume, monkeypatch: pytest.MonkeyPatch
) -> None:
    import registration.rigid as rigid
    from registration.global_search import Candidate
    from registration.pyramid import Level

    # starve the optimiser: two iterations per level cannot cover a 10 mm set-up error, and
    # the global search is replaced by a start at the identity
    starved = tuple(Level(lv.spacing_mm, 2, lv.samples) for lv in rigid.LEVELS)
    monkeypatch.setattr(rigid, "LEVELS", starved)
    identity = Candidate(RigidTransformLps.identity(), 1.0, at_search_edge=False)
    monkeypatch.setattr(rigid, "search", lambda *args: (identity,))
    truth = rigid_about(ISO, np.eye(3), np.array([10.0, -6.0, 8.0]))
    options = RegistrationOptions(isocenter=ISO, second_opinion=False)
    result = register(thorax, _daily(thorax, truth), options)
    assert _tre_mm(result.planning_to_daily_lps, truth, ISO) > 1.5
    assert result.quality.converged is False
    assert not result.trusted
    assert any("not converged" in w for w in result.warnings)


def test_a_second_estimate_that_disagrees_makes_the_result_untrusted(
    thorax: CtVolume, monkeypatch: pytest.MonkeyPatch
) -> None:
    import registration.rigid as rigid
    from registration.pyramid import Level

    # a second estimate that barely moves from the identity must disagree with a 6 mm answer
    monkeypatch.setattr(rigid, "SECOND_OPINION_LEVELS", (Level(10.0, 1, 500),))
    truth = rigid_about(ISO, np.eye(3), np.array([6.0, 0.0, 0.0]))
    result = register(thorax, _daily(thorax, truth), RegistrationOptions(isocenter=ISO))
    assert _tre_mm(result.planning_to_daily_lps, truth, ISO) < 0.5
    assert result.quality.second_estimate_disagreement_mm is not None
    assert result.quality.second_estimate_disagreement_mm > 2.0
    assert not result.trusted
    assert any("second estimate differs" in w for w in result.warnings)

"""Gross set-up errors and self-doubt: the global search, its capture range and the trust rules.

Known motions on the real thorax CT with simulated MVCTs (elastix runs for real). The sign
convention is that of tests/integration/test_registration.py: ``planning_to_daily`` maps a
planning point to where the anatomy is in the MVCT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from registration import refine, rigid
from registration.dicom_series import read_ct_series
from registration.frames import rot_x, rot_y, rot_z
from registration.geometry import LpsPoint, RigidTransformLps
from registration.pyramid import physical_points
from registration.result import RegistrationOptions, SphereRoi
from registration.rigid import prepare_planning, register, register_many
from registration.simulate import MvctSimulationOptions, rigid_about, simulate_mvct
from registration.volume import CtVolume

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
THORAX = DATA / "thorax_4dct_phase00_dicom"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not THORAX.is_dir(), reason=f"real CT data not found at {DATA}"),
]
ISO = LpsPoint(0.0, 40.0, -40.0)  # inside the thorax (mediastinum)


@pytest.fixture
def elastix_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The metric of every elastix run a registration makes, in order ("MI" or "NMI")."""
    runs: list[str] = []
    real = refine.run_level

    def counted(*args: Any, **kwargs: Any) -> Any:
        runs.append("NMI" if kwargs.get("overrides") else "MI")
        return real(*args, **kwargs)

    monkeypatch.setattr(refine, "run_level", counted)
    return runs


@pytest.fixture(scope="module")
def thorax() -> CtVolume:
    volume = read_ct_series(THORAX)
    small = sitk.BinShrink(volume.image, [2, 2, 1])  # 1.95 × 1.95 × 2 mm keeps the tests quick
    return CtVolume(small, volume.patient_position, series_instance_uid="thorax")


def _daily(
    planning: CtVolume, motion: RigidTransformLps, center: LpsPoint = ISO, length_mm: float = 120.0
) -> CtVolume:
    options = MvctSimulationOptions(
        pixel_spacing_mm=1.0, scan_center=center, scan_length_mm=length_mm, random_seed=3
    )
    return CtVolume(simulate_mvct(planning.image, motion, options), planning.patient_position)


def _tre_mm(found: RigidTransformLps, truth: RigidTransformLps, center: LpsPoint) -> float:
    g = np.linspace(-50, 50, 11)
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    pts = pts[np.sum(pts**2, axis=1) <= 2500] + center.as_array()
    return float(np.max(np.linalg.norm(found.apply_array(pts) - truth.apply_array(pts), axis=1)))


def test_a_35mm_and_8_degree_set_up_error_is_found_within_half_a_millimetre(
    thorax: CtVolume,
) -> None:
    truth = rigid_about(ISO, rot_z(8.0) @ rot_y(-6.0) @ rot_x(-8.0), np.array([35.0, -25.0, 30.0]))
    result = register(thorax, _daily(thorax, truth), RegistrationOptions(isocenter=ISO))
    assert _tre_mm(result.planning_to_daily_lps, truth, ISO) < 0.5
    # found, but a set-up error this large is for a human to look at
    assert not result.trusted
    assert any("exceeds 20 mm" in w for w in result.warnings)
    assert not any("capture range" in w for w in result.warnings)


def test_a_set_up_error_beyond_the_capture_range_is_not_trusted_and_says_so(
    thorax: CtVolume,
) -> None:
    truth = rigid_about(ISO, rot_z(3.0), np.array([75.0, 0.0, -5.0]))
    result = register(thorax, _daily(thorax, truth), RegistrationOptions(isocenter=ISO))
    assert not result.trusted
    assert any("beyond the capture range" in w for w in result.warnings), result.warnings


def _periodic(thorax: CtVolume, period_slices: int, repeats: int) -> CtVolume:
    """A planning CT made of one slab of the thorax repeated along z: every period looks alike."""
    image = thorax.image
    k = image.TransformPhysicalPointToIndex(ISO.as_array().tolist())[2]
    arr = sitk.GetArrayFromImage(image)
    slab = arr[k - period_slices // 2 : k - period_slices // 2 + period_slices]
    out = sitk.GetImageFromArray(np.concatenate([slab] * repeats, axis=0))
    out.SetSpacing(image.GetSpacing())
    out.SetDirection(image.GetDirection())
    out.SetOrigin(image.GetOrigin())
    return CtVolume(out, thorax.patient_position)


def test_a_periodic_anatomy_in_a_short_scan_is_not_trusted_as_two_distinct_optima(
    thorax: CtVolume, elastix_runs: list[str]
) -> None:
    planning = _periodic(thorax, period_slices=14, repeats=10)  # 28 mm, like a vertebra
    size = planning.image.GetSize()
    middle = planning.image.TransformContinuousIndexToPhysicalPoint(
        [(size[0] - 1) / 2, (size[1] - 1) / 2 + 20, (size[2] - 1) / 2]
    )
    center = LpsPoint.from_array(middle)
    truth = rigid_about(center, rot_z(1.0), np.array([3.0, 2.0, -4.0]))
    daily = _daily(planning, truth, center=center, length_mm=60.0)
    result = register(planning, daily, RegistrationOptions(isocenter=center))
    assert not result.trusted
    assert any("two distinct optima" in w for w in result.warnings), result.warnings
    # the rival never came near the answer, so it was refined through every level
    answer, rival = len(rigid.LEVELS), len(rigid.SECOND_OPINION_LEVELS)
    assert elastix_runs[: answer + rival] == ["MI"] * (answer + rival)


def test_the_doubt_stops_refining_once_it_has_joined_the_answer(
    thorax: CtVolume, elastix_runs: list[str]
) -> None:
    truth = rigid_about(ISO, rot_z(2.0) @ rot_x(-1.5), np.array([6.0, -4.0, 8.0]))
    result = register(thorax, _daily(thorax, truth), RegistrationOptions(isocenter=ISO))
    assert result.trusted, result.warnings
    assert _tre_mm(result.planning_to_daily_lps, truth, ISO) < 0.5
    second = elastix_runs.count("NMI")
    assert rigid.SECOND_OPINION_MIN_LEVELS <= second <= len(rigid.SECOND_OPINION_LEVELS)
    disagreement = result.quality.second_estimate_disagreement_mm
    assert disagreement is not None
    if second < len(rigid.SECOND_OPINION_LEVELS):  # stopped early: only because it agreed
        assert disagreement <= rigid.SECOND_OPINION_AGREES_MM
    # every MI run past the answer's own levels is the rival's, and it stopped as it joined
    assert elastix_runs.count("MI") < len(rigid.LEVELS) + len(rigid.SECOND_OPINION_LEVELS)


def test_a_planning_frame_region_drives_the_match_under_a_large_set_up_error(
    thorax: CtVolume,
) -> None:
    truth = rigid_about(ISO, rot_z(2.0), np.array([0.0, 10.0, 30.0]))
    inside = np.linalg.norm(physical_points(thorax.image) - ISO.as_array(), axis=-1) <= 60.0
    region = sitk.GetImageFromArray(inside.astype(np.uint8))
    region.CopyInformation(thorax.image)
    daily = _daily(thorax, truth, length_mm=100.0)
    prepared = prepare_planning(thorax)
    by_region = RegistrationOptions(isocenter=ISO, planning_region=region)
    by_sphere = RegistrationOptions(isocenter=ISO, roi=SphereRoi(ISO, 60.0))

    results = [r for o in (by_region, by_sphere) for r in register_many(prepared, [daily], o)]

    for result in results:  # the tolerance of the region-of-interest test without set-up error
        assert _tre_mm(result.planning_to_daily_lps, truth, ISO) < 0.75

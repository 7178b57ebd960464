"""Tests of registration.anatomy on the real thorax CT with simulated MVCTs and the TRUE motion.

The tests are about the anatomy measure, not the registration, so ``planning_to_daily`` is the
known simulated motion M (the anatomy at planning point p is at M·p in the MVCT). Sign under test:
the body outline distance is positive outward (body larger today), negative inward (weight loss).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from registration.anatomy import AnatomyFigures, measure_anatomy
from registration.anatomy_alert import AnatomyAlertReason, evaluate_anatomy_alert
from registration.anatomy_body import body_mask
from registration.dicom_series import read_ct_series
from registration.errors import InputError
from registration.geometry import LpsPoint, RigidTransformLps
from registration.simulate import MvctSimulationOptions, random_motion, simulate_mvct
from registration.simulate_anatomy import (
    coordinate_mm,
    with_couch,
    with_spherical_lesion,
    with_weight_loss,
)

THORAX = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "thorax_4dct_phase00_dicom"
)
pytestmark = pytest.mark.skipif(not THORAX.is_dir(), reason=f"real CT data not found: {THORAX}")

ISO = LpsPoint(0.0, 40.0, -40.0)
TUMOUR = LpsPoint(60.0, 40.0, -40.0)  # in the left lung
SIM = MvctSimulationOptions(pixel_spacing_mm=1.5, scan_center=ISO, scan_length_mm=100.0)


@pytest.fixture(scope="module")
def thorax() -> sitk.Image:
    """The real thorax CT at 1.95 × 1.95 × 2 mm."""
    image: sitk.Image = sitk.BinShrink(read_ct_series(THORAX).image, [2, 2, 1])
    return image


@pytest.fixture(scope="module")
def planning(thorax: sitk.Image) -> sitk.Image:
    """The thorax with a tumour-like sphere of 20 mm radius in the left lung."""
    return with_spherical_lesion(thorax, TUMOUR, 20.0)


def _fraction(
    source: sitk.Image, seed: int, **changes: object
) -> tuple[sitk.Image, RigidTransformLps]:
    motion = random_motion(np.random.default_rng(seed), 6.0, 1.5, ISO)
    options = dataclasses.replace(SIM, random_seed=seed, **changes)  # type: ignore[arg-type]
    return simulate_mvct(source, motion, options), motion


def test_ordinary_fractions_show_no_body_change_and_raise_no_alert(planning: sitk.Image) -> None:
    variants = [
        {"noise_hu": 60.0, "slice_spacing_mm": 6.0},
        {"noise_hu": 25.0, "cupping_hu": 60.0, "slice_spacing_mm": 4.0},
        {"noise_hu": 40.0, "slice_spacing_mm": 6.0},
    ]
    course = []
    for seed, changes in enumerate(variants):
        daily, motion = _fraction(planning, seed, **changes)
        course.append(measure_anatomy(planning, daily, motion, isocenter=TUMOUR))
    on_couch, motion = _fraction(with_couch(planning), 7, slice_spacing_mm=4.0)
    course.append(measure_anatomy(planning, on_couch, motion, isocenter=TUMOUR))
    for figures in course:
        assert abs(figures.mean_surface_mm) < 1.0, figures.mean_surface_mm
        assert abs(figures.area_change_percent) < 2.0, figures.area_change_percent
        assert len(figures.slices) >= 15
    for n in range(1, len(course) + 1):
        verdict = evaluate_anatomy_alert(course[:n])
        assert not verdict.alert, verdict.messages


def test_a_weight_loss_of_8_mm_is_flagged_on_that_fraction_and_not_before(
    planning: sitk.Image,
) -> None:
    losses_mm = [0.0, 0.0, 0.0, 2.0, 8.0]
    course = []
    for seed, loss in enumerate(losses_mm):
        daily, motion = _fraction(with_weight_loss(planning, loss), 10 + seed)
        course.append(measure_anatomy(planning, daily, motion, isocenter=TUMOUR))
    verdicts = [evaluate_anatomy_alert(course[: n + 1]) for n in range(len(course))]

    assert [v.alert for v in verdicts] == [False, False, False, False, True]
    assert AnatomyAlertReason.SURFACE in verdicts[-1].reasons
    # inward is negative; the 8 mm shell is measured within a pixel and a half
    assert course[-1].mean_surface_mm == pytest.approx(-8.0, abs=1.5)
    assert course[3].mean_surface_mm == pytest.approx(-2.0, abs=1.0)
    assert course[-1].area_change_percent < -3.0
    assert course[-1].max_inward_mm >= 8.0


def test_a_body_larger_than_planned_reads_outward_positive(planning: sitk.Image) -> None:
    smaller_plan = with_weight_loss(planning, 5.0)
    daily, motion = _fraction(planning, 21)
    figures = measure_anatomy(smaller_plan, daily, motion, isocenter=TUMOUR)
    assert figures.mean_surface_mm == pytest.approx(5.0, abs=1.2)
    assert figures.area_change_percent > 2.0
    assert figures.max_outward_mm >= 5.0


def test_a_tumour_shrinking_inside_the_ptv_raises_the_misfit_over_the_baseline(
    thorax: sitk.Image, planning: sitk.Image
) -> None:
    distance = np.sqrt(
        sum(
            (np.broadcast_to(coordinate_mm(planning, a), planning.GetSize()[::-1]) - c) ** 2
            for a, c in enumerate(TUMOUR.as_array())
        )
    )
    ptv = distance <= 30.0  # a numpy mask on the planning grid
    shrunk = with_spherical_lesion(thorax, TUMOUR, 12.0)  # radius 20 → 12 mm, lung around it
    course = []
    for seed, source in enumerate([planning, planning, planning, shrunk]):
        daily, motion = _fraction(source, 30 + seed)
        course.append(measure_anatomy(planning, daily, motion, ptv=ptv))
    verdict = evaluate_anatomy_alert(course)

    assert course[-1].misfit_region == "ptv"
    assert verdict.misfit_increase is not None and verdict.misfit_increase > 0.02
    baseline = [f.misfit for f in course[:3]]
    assert max(baseline) - min(baseline) < 0.005  # type: ignore[operator]
    assert verdict.reasons == (AnatomyAlertReason.MISFIT,)


def test_figures_survive_a_json_round_trip(planning: sitk.Image) -> None:
    daily, motion = _fraction(planning, 40)
    figures = measure_anatomy(planning, daily, motion, isocenter=TUMOUR)
    again = AnatomyFigures.from_dict(json.loads(json.dumps(figures.to_dict())))
    assert again.to_dict() == figures.to_dict()
    assert again.mean_surface_mm == pytest.approx(figures.mean_surface_mm, abs=1e-3)


def test_a_planning_ct_narrower_than_the_mvct_field_is_compared_where_both_exist(
    planning: sitk.Image,
) -> None:
    narrow = planning[50:206, :, :]  # x from −152 to +152 mm; the MVCT sees ±190 mm
    daily, motion = _fraction(planning, 42)
    figures = measure_anatomy(narrow, daily, motion, isocenter=TUMOUR)
    assert abs(figures.mean_surface_mm) < 1.0
    assert abs(figures.area_change_percent) < 2.0
    assert any("narrower" in w for w in figures.warnings)


def test_an_external_structure_is_used_instead_of_the_threshold_when_given(
    planning: sitk.Image,
) -> None:
    spacing = planning.GetSpacing()
    body = body_mask(sitk.GetArrayFromImage(planning), (spacing[1], spacing[0]))
    larger = sitk.BinaryDilate(sitk.GetImageFromArray(body.astype(np.uint8)), [2, 2, 0])
    larger.CopyInformation(planning)  # EXTERNAL drawn 2 pixels (3.9 mm) outside the skin
    daily, motion = _fraction(planning, 43)
    as_array = measure_anatomy(planning, daily, motion, external=body, isocenter=TUMOUR)
    as_image = measure_anatomy(planning, daily, motion, external=larger, isocenter=TUMOUR)
    assert as_array.body_source == as_image.body_source == "external"
    assert abs(as_array.mean_surface_mm) < 1.0
    assert as_image.mean_surface_mm == pytest.approx(-3.9, abs=1.0)  # today inside the EXTERNAL


def test_a_mask_not_on_the_planning_grid_is_refused_with_its_shape(planning: sitk.Image) -> None:
    daily, motion = _fraction(planning, 41)
    with pytest.raises(InputError, match=r"shape \(3, 3, 3\)"):
        measure_anatomy(planning, daily, motion, external=np.ones((3, 3, 3), dtype=bool))

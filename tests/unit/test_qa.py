"""Tests of daily imaging QA (registration.qa, registration.qa_phantom) without registration.

Sign under test: a couch offset O applied to the phantom is undone by the correction O⁻¹; for a
pure translation that is −O in every IEC axis.
"""

from __future__ import annotations

import numpy as np
import pytest

from registration.couch import CouchCorrection, correction_as_planning_to_daily
from registration.errors import InputError
from registration.frames import PatientPosition
from registration.geometry import LpsPoint
from registration.qa import (
    QaImageBaseline,
    QaImageTolerance,
    QaTolerance,
    control_chart,
    evaluate_image,
    evaluate_positioning,
    expected_correction_for_couch_offset,
)
from registration.qa_phantom import PHANTOM, QaImageFigures, measure_phantom_image, qa_phantom_ct
from registration.simulate import MvctSimulationOptions, simulate_mvct

ISO = LpsPoint(0.0, 0.0, 0.0)


def correction(*values: float) -> CouchCorrection:
    return CouchCorrection(*values)


@pytest.mark.parametrize("position", list(PatientPosition))
def test_a_translation_offset_is_undone_by_its_negative(position: PatientPosition) -> None:
    expected = expected_correction_for_couch_offset(correction(5, -3, 2, 0, 0, 0), ISO, position)
    assert (expected.lateral_mm, expected.longitudinal_mm, expected.vertical_mm) == pytest.approx(
        (-5, 3, -2), abs=1e-9
    )
    assert expected.max_abs_rotation_deg() == pytest.approx(0.0, abs=1e-9)


def test_an_offset_with_rotation_and_its_expected_correction_compose_to_nothing() -> None:
    offset = correction(4, -2, 3, 1.0, -2.0, 1.5)
    position = PatientPosition.HFS
    expected = expected_correction_for_couch_offset(offset, ISO, position)
    # the anatomy motion the expected correction undoes, then the offset's own: identity
    undone = correction_as_planning_to_daily(expected, ISO, position)
    moved_by_offset = correction_as_planning_to_daily(offset, ISO, position).inverse()
    np.testing.assert_allclose(undone.as_array(), moved_by_offset.as_array(), atol=1e-9)
    assert expected.roll_deg == pytest.approx(2.0, abs=0.1)


def test_positioning_passes_within_2_mm_and_fails_beyond_on_that_axis_only() -> None:
    expected = correction(-5, 3, -2, 0, 0, 0)
    result = evaluate_positioning(correction(-4.2, 3.1, -2, 0, 0.3, 0), expected)
    assert result.passed
    failed = evaluate_positioning(correction(-2.6, 3.1, -2, 0, 0, 0), expected)
    assert not failed.passed and failed.failed_axes() == ("lateral_mm",)
    assert failed.axes[0].error == pytest.approx(2.4)
    assert failed.to_dict()["axes"][0]["passed"] is False


def test_srs_machines_get_the_1_mm_tolerance() -> None:
    srs = QaTolerance.for_machine(treats_srs_sbrt=True)
    assert srs.translation_mm == 1.0 and QaTolerance.for_machine(False).translation_mm == 2.0
    result = evaluate_positioning(correction(1.5, 0, 0, 0, 0, 0), correction(0, 0, 0, 0, 0, 0), srs)
    assert result.failed_axes() == ("lateral_mm",)


def test_a_rotation_beyond_the_angular_tolerance_fails() -> None:
    result = evaluate_positioning(correction(0, 0, 0, 0, 1.4, 0), correction(0, 0, 0, 0, 0, 0))
    assert result.failed_axes() == ("roll_deg",)


def test_image_figures_are_checked_against_their_baseline() -> None:
    baseline = QaImageBaseline(40.0, 5.0, (("lung", -700.0), ("adipose", -100.0)))
    good = QaImageFigures(45.0, 10.0, (("lung", -660.0), ("adipose", -75.0)))
    assert all(c.passed for c in evaluate_image(good, baseline))
    bad = QaImageFigures(52.0, 31.0, (("lung", -640.0), ("adipose", -60.0)))
    failed = {c.figure for c in evaluate_image(bad, baseline, QaImageTolerance()) if not c.passed}
    assert failed == {"noise_hu", "uniformity_hu", "insert:lung", "insert:adipose"}


def test_the_baseline_is_the_mean_of_the_first_days() -> None:
    days = [
        QaImageFigures(40.0, 4.0, (("air", -990.0),)),
        QaImageFigures(42.0, 6.0, (("air", -1000.0),)),
    ]
    base = QaImageBaseline.from_figures(days)
    assert (base.noise_hu, base.uniformity_hu, base.inserts) == (41.0, 5.0, (("air", -995.0),))


def test_control_chart_lines_follow_the_moving_range_rule() -> None:
    chart = control_chart([0.1, -0.2, 0.0, 0.3, 2.5], tolerance=2.0)
    moving_range = np.mean([0.3, 0.2, 0.3, 2.2])
    assert chart.mean == pytest.approx(0.54)
    assert chart.upper_control_limit == pytest.approx(0.54 + 2.66 * moving_range)
    assert (chart.upper_tolerance, chart.lower_tolerance) == (2.0, -2.0)
    assert chart.out_of_tolerance == (4,)
    assert control_chart([0.0] * 5 + [1.0], tolerance=2.0).out_of_control == (5,)
    with pytest.raises(InputError):
        control_chart([], tolerance=2.0)


def test_the_simulated_phantom_reads_its_noise_and_insert_numbers_back() -> None:
    phantom = qa_phantom_ct(pixel_mm=2.0, slice_mm=2.0)
    motion = correction_as_planning_to_daily(
        correction(-3, 2, 1, 0, 0, 0), ISO, PatientPosition.HFS
    )
    options = MvctSimulationOptions(
        pixel_spacing_mm=1.0, noise_hu=40.0, cupping_hu=0.0, scan_center=ISO, random_seed=5
    )
    figures = measure_phantom_image(simulate_mvct(phantom, motion, options), motion)
    assert figures.noise_hu == pytest.approx(40.0, rel=0.15)
    assert figures.uniformity_hu < 8.0
    for insert in PHANTOM.inserts:
        assert figures.insert(insert.name) == pytest.approx(insert.mv_number, abs=25.0)

"""The worker measures the anatomy inside the course's own EXTERNAL and PTV when it has them."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import SimpleITK as sitk

from app.jobs.planning_cache import CachedStructure, CachedStructures, build
from app.jobs.task import anatomy_masks, measure_after_match
from registration.dicom_series import read_ct_series
from registration.geometry import LpsPoint, RigidTransformLps
from registration.rtstruct import read_structure_set

SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"


def _mask(shape: tuple[int, int, int], where: tuple[slice, slice, slice]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[where] = True
    return mask


def test_the_masks_are_the_external_and_the_union_of_every_ptv_and_empty_rois_are_ignored() -> None:
    shape = (4, 5, 6)
    body = _mask(shape, (slice(None), slice(1, 4), slice(1, 5)))
    ptv1 = _mask(shape, (slice(0, 1), slice(2, 3), slice(2, 3)))
    ptv2 = _mask(shape, (slice(3, 4), slice(2, 3), slice(3, 4)))
    cached = CachedStructures(
        sitk.Image([6, 5, 4], sitk.sitkUInt8),
        (
            CachedStructure("empty outline", "EXTERNAL", None, np.zeros(shape, dtype=bool)),
            CachedStructure("BODY", "EXTERNAL", None, body),
            CachedStructure("PTV_high", "PTV", None, ptv1),
            CachedStructure("PTV_low", "PTV", None, ptv2),
            CachedStructure("SpinalCord", "ORGAN", None, _mask(shape, (slice(None),) * 3)),
        ),
    )
    external, ptv = anatomy_masks(cached)
    assert np.array_equal(external, body)
    assert np.array_equal(ptv, ptv1 | ptv2)
    assert anatomy_masks(None) == (None, None)


def test_the_sample_course_is_measured_inside_its_external_structure() -> None:
    planning = read_ct_series(SAMPLES / "planning").image
    daily = read_ct_series(SAMPLES / "mvct").image
    truth = json.loads((SAMPLES / "truth.json").read_text())
    cached = build(read_structure_set(SAMPLES / "rtstruct.dcm"), planning)
    external, ptv = anatomy_masks(cached)
    assert external is not None and ptv is not None
    result = SimpleNamespace(  # the known motion of the sample MVCT stands in for the engine's
        planning_to_daily_lps=RigidTransformLps.from_array(truth["planning_to_daily_lps"]),
        isocenter_lps_mm=LpsPoint(*truth["isocenter_lps_mm"]),
    )
    with_masks = measure_after_match("anatomy", planning, daily, result, external=external, ptv=ptv)
    without = measure_after_match("anatomy", planning, daily, result)
    assert with_masks is not None and without is not None
    assert with_masks["anatomy"]["body_source"] == "external", with_masks
    assert without["anatomy"]["body_source"] == "threshold", without

"""Outlines of a mask on axial, coronal and sagittal sections of its grid (for the review views)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from registration.errors import PlanningPackageError
from registration.rt_sections import GridAxis, mask_contours_lps_mm, mask_section_lps_mm


def grid() -> sitk.Image:
    image = sitk.Image((30, 20, 10), sitk.sitkUInt8)
    image.SetSpacing((1.0, 2.0, 3.0))
    image.SetOrigin((-10.0, 5.0, 100.0))
    return image


def box_mask() -> np.ndarray:
    mask = np.zeros((10, 20, 30), bool)
    mask[2:6, 4:9, 10:21] = True  # i 10..20, j 4..8, k 2..5
    return mask


@pytest.mark.parametrize(
    ("axis", "index", "constant", "value_mm", "extent_mm"),
    [
        # x = −10 + i, y = 5 + 2 j, z = 100 + 3 k; outlines run half a voxel outside the centres
        (GridAxis.K, 3, 2, 109.0, {0: (-0.5, 10.5), 1: (12.0, 22.0)}),
        (GridAxis.J, 6, 1, 17.0, {0: (-0.5, 10.5), 2: (104.5, 116.5)}),
        (GridAxis.I, 15, 0, 5.0, {1: (12.0, 22.0), 2: (104.5, 116.5)}),
    ],
)
def test_a_box_s_outline_on_each_section_runs_half_a_voxel_outside_its_centres(
    axis: GridAxis,
    index: int,
    constant: int,
    value_mm: float,
    extent_mm: dict[int, tuple[float, float]],
) -> None:
    (outline,) = mask_section_lps_mm(box_mask(), grid(), axis, index)
    np.testing.assert_allclose(outline[:, constant], value_mm)
    for coordinate, (low, high) in extent_mm.items():
        assert outline[:, coordinate].min() == pytest.approx(low)
        assert outline[:, coordinate].max() == pytest.approx(high)


def test_a_section_outside_the_mask_is_empty_and_outside_the_grid_is_refused() -> None:
    assert mask_section_lps_mm(box_mask(), grid(), GridAxis.J, 0) == []
    with pytest.raises(PlanningPackageError, match=r"section index 30 is outside 0\.\.29 along I"):
        mask_section_lps_mm(box_mask(), grid(), GridAxis.I, 30)


def test_axial_contours_come_slice_by_slice() -> None:
    contours = mask_contours_lps_mm(box_mask(), grid())
    assert [k for k, _ in contours] == [2, 3, 4, 5]
    assert all(points.shape == (8, 3) for _, points in contours)  # corners cut: 2 per corner

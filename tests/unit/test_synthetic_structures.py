"""Synthetic structures: the cropped sphere and cylinder equal the brute-force definition."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from registration.geometry import LpsPoint
from registration.synthetic_structures import cylinder_mask, sphere_mask, voxel_centres_lps_mm


@pytest.mark.parametrize(
    "direction",
    [
        (1, 0, 0, 0, 1, 0, 0, 0, 1),
        (-1, 0, 0, 0, -1, 0, 0, 0, 1),
        (0, 1, 0, -1, 0, 0, 0, 0, 1),
        (0, 0, 1, 1, 0, 0, 0, 1, 0),
    ],
)
def test_sphere_and_cylinder_hold_exactly_the_voxel_centres_inside_them(
    direction: tuple[int, ...],
) -> None:
    grid = sitk.Image((60, 50, 40), sitk.sitkUInt8)
    grid.SetSpacing((1.1, 0.9, 2.0))
    grid.SetDirection(direction)
    centres = voxel_centres_lps_mm(grid)
    middle = centres.reshape(-1, 3).mean(axis=0)
    sphere = sphere_mask(grid, LpsPoint.from_array(middle), 12.0)
    np.testing.assert_array_equal(sphere, np.sum((centres - middle) ** 2, axis=-1) <= 144.0)
    x, y, z = middle
    cylinder = cylinder_mask(grid, x, y, 6.0, z + 10.0, z - 10.0)
    radial = (centres[..., 0] - x) ** 2 + (centres[..., 1] - y) ** 2 <= 36.0
    along = np.abs(centres[..., 2] - z) <= 10.0
    np.testing.assert_array_equal(cylinder, radial & along)
    assert sphere.sum() > 3000 and cylinder.sum() > 1000

"""A region of interest is defined in the planning frame and follows the current estimate.

``region_mask`` receives an MVCT level mask whose geometry was moved by the daily → planning
estimate; the region must select the MVCT voxels that the estimate maps into it, not the voxels
at the region's coordinates on the MVCT's own grid (which are off by the whole set-up error).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from registration.geometry import LpsPoint, RigidTransformLps
from registration.pyramid import physical_points, region_mask
from registration.refine import moved_geometry
from registration.result import SphereRoi

SETUP_ERROR_MM = np.array([0.0, 0.0, 40.0])  # the anatomy moved 40 mm towards the head


def _daily_mask() -> sitk.Image:
    mask = sitk.Image([40, 40, 40], sitk.sitkUInt8) + 1
    mask.SetSpacing((3.0, 3.0, 3.0))
    mask.SetOrigin((-60.0, -60.0, -60.0))
    return mask


def _daily_to_planning() -> RigidTransformLps:
    # the anatomy at planning p is at p + d in the MVCT, so daily → planning subtracts d
    return RigidTransformLps.from_rotation_translation(np.eye(3), -SETUP_ERROR_MM)


def test_a_planning_frame_sphere_selects_the_mvct_voxels_mapped_into_it() -> None:
    daily = _daily_mask()
    moved = moved_geometry(daily, _daily_to_planning())
    roi = SphereRoi(LpsPoint(0.0, 0.0, -20.0), 15.0)

    keep = region_mask(moved, roi, None)

    daily_points = physical_points(daily)[keep]
    planning_points = daily_points - SETUP_ERROR_MM
    assert keep.any()
    assert np.all(np.linalg.norm(planning_points - roi.center.as_array(), axis=1) <= 15.0)
    # the selected MVCT voxels lie around planning centre + set-up error, not at the centre
    assert np.allclose(daily_points.mean(axis=0), [0.0, 0.0, 20.0], atol=1.5)


def test_a_planning_grid_mask_selects_the_same_voxels_as_the_equivalent_sphere() -> None:
    daily = _daily_mask()
    moved = moved_geometry(daily, _daily_to_planning())
    planning = sitk.Image([100, 100, 100], sitk.sitkUInt8)
    planning.SetSpacing((2.0, 2.0, 2.0))
    planning.SetOrigin((-100.0, -100.0, -100.0))
    center = np.array([0.0, 0.0, -20.0])
    inside = np.linalg.norm(physical_points(planning) - center, axis=-1) <= 15.0
    region = sitk.GetImageFromArray(inside.astype(np.uint8))
    region.CopyInformation(planning)

    from_mask = region_mask(moved, None, region)
    from_sphere = region_mask(moved, SphereRoi(LpsPoint.from_array(center), 15.0), None)

    assert from_mask.any()
    assert np.count_nonzero(from_mask ^ from_sphere) <= 0.2 * np.count_nonzero(
        from_sphere
    )  # surface voxels
    assert np.allclose(physical_points(daily)[from_mask].mean(axis=0), [0.0, 0.0, 20.0], atol=1.5)


def test_without_a_region_the_mask_is_unchanged() -> None:
    daily = _daily_mask()
    assert region_mask(daily, None, None).all()

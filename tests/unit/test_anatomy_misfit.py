"""Tests of the target-region misfit (registration.anatomy_misfit) on the QA phantom.

The measure must not care about kV/MV contrast or edge polarity (it compares edge directions),
and must see an edge that moved.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from registration.anatomy_misfit import target_misfit
from registration.geometry import LpsPoint, RigidTransformLps
from registration.qa_phantom import qa_phantom_ct
from registration.simulate import MvctSimulationOptions, simulate_mvct
from registration.simulate_anatomy import with_spherical_lesion

ROD = LpsPoint(60.0, 0.0, -30.0)  # the lung rod: a strong edge inside the sphere
NOISELESS = MvctSimulationOptions(
    pixel_spacing_mm=1.5, noise_hu=0.0, cupping_hu=0.0, scan_length_mm=80.0, scan_center=ROD
)


@pytest.fixture(scope="module")
def phantom() -> sitk.Image:
    return qa_phantom_ct(pixel_mm=1.5, slice_mm=2.0)


def misfit(planning: sitk.Image, daily: sitk.Image, motion: RigidTransformLps) -> float:
    value = target_misfit(
        planning,
        daily,
        motion,
        None,
        ROD,
        smoothing_mm=2.0,
        working_pixel_mm=1.5,
        sphere_radius_mm=40.0,
        fov_margin_mm=10.0,
    )
    assert value is not None
    return value


def test_the_same_anatomy_fits_whatever_the_contrast_and_polarity(phantom: sitk.Image) -> None:
    motion = RigidTransformLps.from_rotation_translation(np.eye(3), np.array([3.0, -2.0, 4.0]))
    daily = simulate_mvct(phantom, motion, NOISELESS)
    inverted = -0.5 * daily - 1500.0  # a different scale and reversed edge polarity
    plain = misfit(phantom, daily, motion)
    assert plain < 0.02
    assert misfit(phantom, inverted, motion) == pytest.approx(plain, abs=1e-6)


def test_a_region_that_changed_shape_raises_the_misfit(phantom: sitk.Image) -> None:
    motion = RigidTransformLps.identity()
    same = misfit(phantom, simulate_mvct(phantom, motion, NOISELESS), motion)
    grown = with_spherical_lesion(phantom, LpsPoint(60.0, 25.0, -30.0), 12.0, value_hu=-700.0)
    changed = misfit(phantom, simulate_mvct(grown, motion, NOISELESS), motion)
    assert changed > same + 0.005  # a 12 mm blob among the rod and wall edges of a 40 mm sphere


def test_a_region_outside_the_scan_gives_no_misfit(phantom: sitk.Image) -> None:
    motion = RigidTransformLps.identity()
    daily = simulate_mvct(phantom, motion, NOISELESS)
    far = LpsPoint(0.0, 0.0, 400.0)
    value = target_misfit(
        phantom,
        daily,
        motion,
        None,
        far,
        smoothing_mm=2.0,
        working_pixel_mm=1.5,
        sphere_radius_mm=40.0,
        fov_margin_mm=10.0,
    )
    assert value is None

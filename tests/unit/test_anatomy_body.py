"""Tests of registration.anatomy_body on drawn shapes (pure numpy, no images).

Sign under test: a measured outline outside the reference outline reads positive (outward).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registration.anatomy_body import body_mask, outline_distances_mm, signed_distance_mm

PIXEL_MM = 1.0


def disc(radius_mm: float, n: int = 201, centre: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    c = (np.arange(n) - (n - 1) / 2) * PIXEL_MM
    yy, xx = np.meshgrid(c, c, indexing="ij")
    return ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) <= radius_mm**2


@settings(max_examples=25, deadline=None)
@given(
    reference_mm=st.floats(30.0, 80.0),
    change_mm=st.floats(-15.0, 15.0),
)
def test_concentric_discs_read_their_radius_difference_with_its_sign(
    reference_mm: float, change_mm: float
) -> None:
    sdf = signed_distance_mm(disc(reference_mm), (PIXEL_MM, PIXEL_MM))
    valid = np.ones_like(sdf, dtype=bool)
    distances = outline_distances_mm(disc(reference_mm + change_mm), sdf, valid)
    assert distances.mean() == pytest.approx(change_mm, abs=0.6 * PIXEL_MM)


def test_outline_pairs_outside_the_valid_region_are_ignored() -> None:
    sdf = signed_distance_mm(disc(50.0), (PIXEL_MM, PIXEL_MM))
    valid = np.zeros(sdf.shape, dtype=bool)
    valid[:, :100] = True  # only the left half counts
    measured = disc(50.0)
    measured[:, 100:] = disc(40.0)[:, 100:]  # the right half shrank: not seen
    assert abs(outline_distances_mm(measured, sdf, valid).mean()) < 0.5


def body_slice(values: np.ndarray) -> np.ndarray:
    return body_mask(values[np.newaxis], (PIXEL_MM, PIXEL_MM), smoothing_mm=0.0)[0]


def test_a_thin_couch_shell_touching_the_body_is_not_body() -> None:
    image = np.where(disc(60.0), 0.0, -1000.0)
    image[162:165, :] = 300.0  # a 3 mm carbon-fibre skin tangent to the body's back
    body = body_slice(image)
    assert not body[163, 20] and not body[163, 180]
    assert body.sum() == pytest.approx(disc(60.0).sum(), rel=0.02)


def test_lungs_are_inside_the_body_and_arms_are_kept() -> None:
    image = np.where(disc(60.0), 0.0, -1000.0)
    image[disc(20.0, centre=(0.0, -25.0))] = -800.0  # a lung
    image[disc(16.0, centre=(0.0, 82.0))] = 0.0  # an arm beside the body (7 % of its area)
    body = body_slice(image)
    assert body[100, 75]  # inside the lung
    assert body[100, 182]  # the arm


def test_a_body_cut_by_the_image_border_stays_closed() -> None:
    image = np.where(disc(60.0), 0.0, -1000.0)
    image[disc(20.0, centre=(0.0, -30.0))] = -800.0  # a lung 10 mm from the body's left edge
    cut = image[:, 45:]  # the image border now runs through the chest wall, 5 mm from the lung
    body = body_slice(cut)
    assert body[100, 1]  # the chest wall at the border is not eroded away
    assert body[100, 25]  # and the lung is still inside the body

"""Property tests of the rasteriser: against matplotlib's point-in-polygon, and mask round trips."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.path import Path as MplPath
from scipy import ndimage

from registration.rt_raster import rasterize_structure
from registration.rt_write import mask_contours_lps_mm
from registration.rtstruct import PlanarContour, Structure

SIZE = 32


def grid() -> sitk.Image:
    image = sitk.Image((SIZE, SIZE, 2), sitk.sitkUInt8)
    image.SetSpacing((1.5, 1.0, 2.5))
    image.SetOrigin((-20.0, 10.0, -5.0))
    return image


@settings(max_examples=60, deadline=None)
@given(
    radii=st.lists(st.floats(2.0, 15.0), min_size=3, max_size=40),
    centre=st.tuples(st.floats(-8.0, 8.0), st.floats(-8.0, 8.0)),
)
def test_a_star_polygon_covers_the_voxel_centres_matplotlib_finds_inside(
    radii: list[float], centre: tuple[float, float]
) -> None:
    angles = np.linspace(0.0, 2 * np.pi, len(radii), endpoint=False)
    x = 4.0 + centre[0] + np.array(radii) * np.cos(angles)  # mm LPS, grid x from −20 to 26.5
    y = 26.0 + centre[1] + np.array(radii) * np.sin(angles)  # grid y from 10 to 41
    polygon = np.column_stack([x, y, np.full(len(radii), -2.5)])  # slice k = 1
    mask = rasterize_structure(Structure(1, "S", "PTV", None, (PlanarContour(polygon),)), grid())
    i, j = np.meshgrid(np.arange(SIZE), np.arange(SIZE))
    centres = np.column_stack([-20.0 + 1.5 * i.ravel(), 10.0 + 1.0 * j.ravel()])
    path = MplPath(polygon[:, :2])
    # centres within 1e-6 mm of an edge may go either way; compare all the others
    inside = path.contains_points(centres, radius=1e-6) & path.contains_points(
        centres, radius=-1e-6
    )
    outside = ~path.contains_points(centres, radius=1e-6) & ~path.contains_points(
        centres, radius=-1e-6
    )
    ours = mask[1].ravel()
    assert np.all(ours[inside]) and not np.any(ours[outside])
    assert not mask[0].any()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), fill=st.floats(0.3, 0.7))
def test_contours_written_from_any_mask_rasterise_back_to_the_same_mask(
    seed: int, fill: float
) -> None:
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal((2, SIZE, SIZE)), sigma=(0, 2.0, 2.0))
    mask = noise > np.quantile(noise, 1.0 - fill)  # blobs with holes and islands, edges included
    contours = mask_contours_lps_mm(mask, grid())
    back = np.zeros_like(mask)
    for k in range(2):
        on_slice = tuple(PlanarContour(p) for kk, p in contours if kk == k)
        back[k] = rasterize_structure(Structure(1, "S", "", None, on_slice), grid())[k]
    np.testing.assert_array_equal(back, mask)

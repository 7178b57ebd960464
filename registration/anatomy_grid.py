# SimpleITK ships no annotations; its calls are the only untyped ones here.
# mypy: disable-error-code="no-untyped-call"
"""The working grid of :mod:`registration.anatomy`: the MVCT's slices, coarser pixels, and the
resampling of planning-side images onto it through ``daily_to_planning`` (``M⁻¹``: SimpleITK
resampling maps output points to input points)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from registration.anatomy_body import BoolArray
from registration.errors import InputError
from registration.geometry import RigidTransformLps
from registration.pyramid import padding_mask

__all__ = [
    "crop",
    "ones",
    "padding_as_air",
    "planning_bounds",
    "resample",
    "usable_fov",
    "working_grid",
]

Float32Array = npt.NDArray[np.float32]


def planning_bounds(
    planning: sitk.Image, grid: sitk.Image, daily_to_planning: RigidTransformLps
) -> tuple[tuple[int, int], ...]:
    """Index ranges (x, y, z) of the planning CT that ``grid`` samples, plus two voxels."""
    size = grid.GetSize()
    corners = np.array(
        [
            grid.TransformContinuousIndexToPhysicalPoint([float(i), float(j), float(k)])
            for i in (-0.5, size[0] - 0.5)
            for j in (-0.5, size[1] - 0.5)
            for k in (-0.5, size[2] - 0.5)
        ]
    )
    points = daily_to_planning.apply_array(corners)
    index = np.array(
        [planning.TransformPhysicalPointToContinuousIndex(tuple(map(float, p))) for p in points]
    )
    n = np.asarray(planning.GetSize())
    lo = np.clip(np.floor(index.min(axis=0)).astype(int) - 2, 0, n)
    hi = np.clip(np.ceil(index.max(axis=0)).astype(int) + 3, 0, n)
    if np.any(hi <= lo):
        raise InputError(
            "the MVCT does not overlap the planning CT after the match: check the registration "
            "and that the right planning CT was chosen"
        )
    return tuple((int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def crop(image: sitk.Image, bounds: tuple[tuple[int, int], ...]) -> sitk.Image:
    (x0, x1), (y0, y1), (z0, z1) = bounds
    cropped: sitk.Image = image[x0:x1, y0:y1, z0:z1]
    return cropped


def working_grid(daily: sitk.Image, pixel_mm: float) -> sitk.Image:
    """The MVCT's slices with ``pixel_mm`` pixels covering the same in-plane extent."""
    spacing = daily.GetSpacing()
    size = daily.GetSize()
    new_size = [max(1, math.ceil(size[i] * spacing[i] / pixel_mm)) for i in (0, 1)]
    d = np.array(daily.GetDirection()).reshape(3, 3)
    shift = np.array([(pixel_mm - spacing[0]) / 2, (pixel_mm - spacing[1]) / 2, 0.0])
    grid = sitk.Image([*new_size, size[2]], sitk.sitkUInt8)
    grid.SetSpacing((pixel_mm, pixel_mm, spacing[2]))
    grid.SetDirection(daily.GetDirection())
    grid.SetOrigin(tuple(float(v) for v in np.array(daily.GetOrigin()) + d @ shift))
    return grid


def resample(
    image: sitk.Image,
    grid: sitk.Image,
    output_to_input: RigidTransformLps | None,
    default: float,
    interpolator: int,
) -> Float32Array:
    transform = sitk.AffineTransform(3)
    if output_to_input is not None:
        transform.SetMatrix(tuple(float(v) for v in output_to_input.rotation.ravel()))
        transform.SetTranslation(tuple(float(v) for v in output_to_input.translation_mm))
    out = sitk.Resample(
        sitk.Cast(image, sitk.sitkFloat32), grid, transform, interpolator, default, sitk.sitkFloat32
    )
    return sitk.GetArrayFromImage(out)


def ones(image: sitk.Image) -> sitk.Image:
    result: sitk.Image = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
    result.CopyInformation(image)
    return result


def padding_as_air(daily: sitk.Image) -> sitk.Image:
    pad2d = padding_mask(daily)
    if not pad2d.any():
        return daily
    array = sitk.GetArrayFromImage(daily).astype(np.float32)
    array[:, pad2d] = -1000.0
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(daily)
    return out


def usable_fov(daily: sitk.Image, grid: sitk.Image, margin_mm: float) -> BoolArray:
    """2-D (y, x) mask of the working grid: inside the reconstruction circle minus a margin.

    Without a detected circle the image border counts as the edge.
    """
    inside = ~padding_mask(daily)
    bordered = np.pad(inside, 1, constant_values=False)
    spacing = daily.GetSpacing()
    distance = ndimage.distance_transform_edt(bordered, sampling=(spacing[1], spacing[0]))
    usable = (distance[1:-1, 1:-1] > margin_mm).astype(np.uint8)
    one_slice = sitk.GetImageFromArray(usable[np.newaxis])
    one_slice.SetSpacing(spacing)
    one_slice.SetOrigin(daily.GetOrigin())
    one_slice.SetDirection(daily.GetDirection())
    plane = sitk.Image(grid[:, :, 0:1])
    plane.CopyInformation(grid[:, :, 0:1])
    # both single-slice grids share the first slice's plane, so resampling is in-plane only
    result = resample(one_slice, plane, None, 0.0, sitk.sitkNearestNeighbor)[0] > 0.5
    mask: BoolArray = result
    return mask

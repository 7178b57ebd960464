# SimpleITK ships no annotations; its calls are the only untyped ones here.
# mypy: disable-error-code="no-untyped-call"
"""The target-region misfit of :mod:`registration.anatomy` (definition and source there)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from registration.anatomy_body import BoolArray
from registration.anatomy_grid import (
    Float32Array,
    ones,
    padding_as_air,
    resample,
    usable_fov,
    working_grid,
)
from registration.geometry import LpsPoint, RigidTransformLps

__all__ = [
    "target_misfit",
]


def target_misfit(
    planning_hu: sitk.Image,
    daily_mv: sitk.Image,
    planning_to_daily: RigidTransformLps,
    ptv: sitk.Image | None,
    isocenter: LpsPoint | None,
    *,
    smoothing_mm: float,
    working_pixel_mm: float,
    sphere_radius_mm: float,
    fov_margin_mm: float,
) -> float | None:
    """The gradient-weighted NGF misfit (see :mod:`registration.anatomy`) in the PTV mask
    (cropped planning grid) or the sphere around the isocentre; None when the region is not in
    the scan."""
    daily_to_planning = planning_to_daily.inverse()
    work = working_grid(daily_mv, working_pixel_mm)
    if ptv is not None:
        region = resample(ptv, work, daily_to_planning, 0.0, sitk.sitkLinear) > 0.5
    else:
        if isocenter is None:
            middle = [(n - 1) / 2.0 for n in daily_mv.GetSize()]
            center = np.array(daily_mv.TransformContinuousIndexToPhysicalPoint(middle))
        else:
            center = planning_to_daily.apply(isocenter).as_array()
        region = _sphere(work, center, sphere_radius_mm)
    region &= usable_fov(daily_mv, work, fov_margin_mm)[np.newaxis]
    covered = resample(ones(planning_hu), work, daily_to_planning, 0.0, sitk.sitkNearestNeighbor)
    region &= covered > 0
    if np.count_nonzero(region) < 100:
        return None
    # crop to the region (and a margin for the smoothing) before the expensive resampling
    pad = math.ceil(3 * smoothing_mm / working_pixel_mm) + 2
    idx = np.argwhere(region)
    lo = np.maximum(idx.min(axis=0) - np.array([0, pad, pad]), 0)
    hi = np.minimum(idx.max(axis=0) + np.array([1, pad + 1, pad + 1]), region.shape)
    crop = work[int(lo[2]) : int(hi[2]), int(lo[1]) : int(hi[1]), int(lo[0]) : int(hi[0])]
    region = region[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    daily = resample(padding_as_air(daily_mv), crop, None, -1000.0, sitk.sitkLinear)
    planning = _slab_average(planning_hu, crop, daily_to_planning)
    w = working_pixel_mm
    gf = _gradients(daily, smoothing_mm / w, w)
    gg = _gradients(planning, smoothing_mm / w, w)
    dot = gf[0] * gg[0] + gf[1] * gg[1]
    weight = np.hypot(gf[0], gf[1]) * np.hypot(gg[0], gg[1])
    total = float(weight[region].sum())
    if total <= 0:
        return None
    aligned = np.divide(dot**2, weight, out=np.zeros_like(weight), where=weight > 0)
    return 1.0 - float(aligned[region].sum()) / total


def _sphere(grid: sitk.Image, center: npt.NDArray[np.float64], radius_mm: float) -> BoolArray:
    size = grid.GetSize()
    d = np.array(grid.GetDirection()).reshape(3, 3) * np.array(grid.GetSpacing())
    offset = np.array(grid.GetOrigin()) - center
    i = np.arange(size[0])[None, None, :, None] * d[:, 0]
    j = np.arange(size[1])[None, :, None, None] * d[:, 1]
    k = np.arange(size[2])[:, None, None, None] * d[:, 2]
    inside: BoolArray = np.sum((offset + i + j + k) ** 2, axis=-1) <= radius_mm**2
    return inside


def _slab_average(
    planning: sitk.Image, grid: sitk.Image, daily_to_planning: RigidTransformLps
) -> Float32Array:
    """The planning CT on ``grid`` averaged over each slice thickness (sub-slices ≤ 1.5 mm)."""
    dz = grid.GetSpacing()[2]
    n = max(1, math.ceil(dz / 1.5 - 1e-9))
    d = np.array(grid.GetDirection()).reshape(3, 3)
    total: Float32Array | None = None
    for m in range(n):
        shifted = sitk.Image(grid)
        offset = (-0.5 + (m + 0.5) / n) * dz
        shifted.SetOrigin(tuple(float(v) for v in np.array(grid.GetOrigin()) + d[:, 2] * offset))
        sample = resample(planning, shifted, daily_to_planning, -1000.0, sitk.sitkLinear)
        total = sample if total is None else total + sample
    assert total is not None
    averaged: Float32Array = total / np.float32(n)
    return averaged


def _gradients(array: Float32Array, sigma_px: float, pixel_mm: float) -> tuple[Float32Array, ...]:
    """In-plane (y, x) gradients (per mm) of a (z, y, x) array after a Gaussian of ``sigma_px``."""
    smooth = ndimage.gaussian_filter(array, (0.0, sigma_px, sigma_px))
    gy = np.gradient(smooth, pixel_mm, axis=1).astype(np.float32)
    gx = np.gradient(smooth, pixel_mm, axis=2).astype(np.float32)
    return gy, gx

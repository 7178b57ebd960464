# SimpleITK ships no annotations; its calls are the only untyped ones here.
# mypy: disable-error-code="no-untyped-call"
"""Structures made from a CT when no planning system drew any (tests, QA, sample data).

All masks are bool arrays ``[k, j, i]`` on the CT's grid; a voxel belongs to a shape when its
centre (LPS mm) does. Thresholds are in HU of the planning kVCT.

* :func:`body_mask` — the patient: voxels above ``threshold_hu`` (default −300 HU), largest
  3-D connected component, holes (lungs, airways) filled slice by slice;
* :func:`bone_mask` — voxels above ``threshold_hu`` (default +200 HU) inside the body;
* :func:`sphere_mask` — a ball, e.g. a PTV around the isocentre;
* :func:`cylinder_mask` — a cylinder along the patient's z axis (LPS), e.g. a cord-like
  structure along the spinal canal, between ``z_from_mm`` and ``z_to_mm``.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from registration.frames import FloatArray
from registration.geometry import LpsPoint
from registration.rt_raster import BoolArray

__all__ = ["body_mask", "bone_mask", "cylinder_mask", "sphere_mask", "voxel_centres_lps_mm"]


def voxel_centres_lps_mm(grid: sitk.Image, box: tuple[slice, ...] | None = None) -> FloatArray:
    """LPS coordinates (mm) of the voxel centres, shape ``(k, j, i, 3)``; all of them, or those
    of ``box`` (``[k, j, i]`` slices with explicit bounds)."""
    ni, nj, nk = grid.GetSize()
    sk, sj, si = box or (slice(0, nk), slice(0, nj), slice(0, ni))
    k, j, i = np.meshgrid(
        np.arange(sk.start, sk.stop),
        np.arange(sj.start, sj.stop),
        np.arange(si.start, si.stop),
        indexing="ij",
    )
    index = np.stack([i, j, k], axis=-1).astype(np.float64)
    spacing = np.array(grid.GetSpacing(), dtype=np.float64)
    direction = np.array(grid.GetDirection(), dtype=np.float64).reshape(3, 3)
    result: FloatArray = (index * spacing) @ direction.T + np.array(grid.GetOrigin())
    return result


def body_mask(image: sitk.Image, threshold_hu: float = -300.0) -> BoolArray:
    above = sitk.GetArrayFromImage(image) > threshold_hu
    labels, count = ndimage.label(above)
    if count == 0:
        return np.zeros_like(above)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    body = labels == int(np.argmax(sizes))
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    filled: BoolArray = ndimage.binary_fill_holes(body, structure=in_plane)
    return filled


def bone_mask(image: sitk.Image, threshold_hu: float = 200.0) -> BoolArray:
    result: BoolArray = (sitk.GetArrayFromImage(image) > threshold_hu) & body_mask(image)
    return result


def sphere_mask(grid: sitk.Image, center: LpsPoint, radius_mm: float) -> BoolArray:
    c = center.as_array()
    box = _index_box(grid, c - radius_mm, c + radius_mm)
    mask = np.zeros(tuple(reversed(grid.GetSize())), dtype=bool)
    offset = voxel_centres_lps_mm(grid, box) - c
    mask[box] = np.einsum("...i,...i->...", offset, offset) <= radius_mm**2
    return mask


def cylinder_mask(
    grid: sitk.Image,
    x_mm: float,
    y_mm: float,
    radius_mm: float,
    z_from_mm: float,
    z_to_mm: float,
) -> BoolArray:
    z_lo, z_hi = min(z_from_mm, z_to_mm), max(z_from_mm, z_to_mm)
    box = _index_box(
        grid,
        np.array([x_mm - radius_mm, y_mm - radius_mm, z_lo]),
        np.array([x_mm + radius_mm, y_mm + radius_mm, z_hi]),
    )
    mask = np.zeros(tuple(reversed(grid.GetSize())), dtype=bool)
    centres = voxel_centres_lps_mm(grid, box)
    radial = (centres[..., 0] - x_mm) ** 2 + (centres[..., 1] - y_mm) ** 2 <= radius_mm**2
    z = centres[..., 2]
    mask[box] = radial & (z >= z_lo) & (z <= z_hi)
    return mask


def _index_box(grid: sitk.Image, low_mm: FloatArray, high_mm: FloatArray) -> tuple[slice, ...]:
    """The ``[k, j, i]`` slices holding every voxel centre inside an LPS box (one voxel spare)."""
    corners = np.array(
        [[(low_mm, high_mm)[b >> n & 1][n] for n in range(3)] for b in range(8)], dtype=np.float64
    )
    spacing = np.array(grid.GetSpacing(), dtype=np.float64)
    direction = np.array(grid.GetDirection(), dtype=np.float64).reshape(3, 3)
    index = ((corners - np.array(grid.GetOrigin())) @ direction) / spacing
    lo = np.maximum(np.floor(index.min(axis=0)).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(index.max(axis=0)).astype(int) + 2, np.array(grid.GetSize()))
    hi = np.maximum(hi, lo)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo[::-1], hi[::-1], strict=True))

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


def voxel_centres_lps_mm(grid: sitk.Image) -> FloatArray:
    """LPS coordinates (mm) of every voxel centre, shape ``(k, j, i, 3)``."""
    ni, nj, nk = grid.GetSize()
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
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
    offset = voxel_centres_lps_mm(grid) - center.as_array()
    result: BoolArray = np.einsum("...i,...i->...", offset, offset) <= radius_mm**2
    return result


def cylinder_mask(
    grid: sitk.Image,
    x_mm: float,
    y_mm: float,
    radius_mm: float,
    z_from_mm: float,
    z_to_mm: float,
) -> BoolArray:
    centres = voxel_centres_lps_mm(grid)
    radial = (centres[..., 0] - x_mm) ** 2 + (centres[..., 1] - y_mm) ** 2 <= radius_mm**2
    z = centres[..., 2]
    result: BoolArray = radial & (z >= min(z_from_mm, z_to_mm)) & (z <= max(z_from_mm, z_to_mm))
    return result

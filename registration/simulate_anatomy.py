# SimpleITK ships no annotations; its calls are the only untyped ones here.
# mypy: disable-error-code="no-untyped-call"
"""Anatomy changes and couches applied to a planning kVCT, before :func:`simulate_mvct`.

Each function takes a kV CT (HU, LPS mm, any direction with axial slices) and returns a new one
with the change; :func:`registration.simulate.simulate_mvct` then makes today's MVCT of it with
a known rigid motion. Pure, deterministic.

* :func:`with_weight_loss` — the body outline eroded by ``loss_mm`` in every slice (in-plane
  distance from the outline, :mod:`registration.anatomy_body` body): the outer shell (skin and
  subcutaneous fat) becomes air, as when a patient loses weight under a rigid mask;
* :func:`with_spherical_lesion` — a tumour-like sphere of soft tissue (40 HU) with a 1 mm soft
  edge; planning with radius r₀ and daily with r₁ < r₀ is a tumour shrinking;
* :func:`with_couch` — the couch of the planning CT removed (everything outside the body set to
  air) and a TomoTherapy-like couch top put under the patient: two carbon-fibre skins
  (``skin_mm``, ``skin_hu``) around a foam core, flat, ``gap_mm`` below the lowest point of the
  body (LPS +y is posterior, so "below" for a supine patient is larger y in the image frame).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from registration.anatomy_body import body_mask
from registration.errors import InputError
from registration.geometry import LpsPoint

__all__ = ["coordinate_mm", "with_couch", "with_spherical_lesion", "with_weight_loss"]

AIR_HU = -1000.0
SOFT_TISSUE_HU = 40.0


def _like(reference: sitk.Image, array: npt.NDArray[np.float32]) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.CopyInformation(reference)
    return image


def coordinate_mm(image: sitk.Image, axis: int) -> npt.NDArray[np.float32]:
    """LPS coordinate ``axis`` (0 x, 1 y, 2 z; mm) of every voxel centre, float32 (z, y, x)."""
    d = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    nx, ny, nz = image.GetSize()
    ramps = (
        np.arange(nx, dtype=np.float32)[None, None, :] * np.float32(d[axis, 0]),
        np.arange(ny, dtype=np.float32)[None, :, None] * np.float32(d[axis, 1]),
        np.arange(nz, dtype=np.float32)[:, None, None] * np.float32(d[axis, 2]),
    )
    return ramps[0] + ramps[1] + ramps[2] + np.float32(image.GetOrigin()[axis])


def _spacing_yx(image: sitk.Image) -> tuple[float, float]:
    s = image.GetSpacing()
    return (s[1], s[0])


def with_weight_loss(planning_hu: sitk.Image, loss_mm: float) -> sitk.Image:
    """``planning_hu`` with an outer shell of ``loss_mm`` of the body turned into air."""
    if not (math.isfinite(loss_mm) and loss_mm >= 0):
        raise InputError(f"loss_mm = {loss_mm!r} must be zero or a positive number of mm")
    array = sitk.GetArrayFromImage(planning_hu).astype(np.float32)
    if loss_mm == 0:
        return _like(planning_hu, array)
    body = body_mask(array, _spacing_yx(planning_hu))
    for k in range(array.shape[0]):
        if not body[k].any():
            continue
        depth = ndimage.distance_transform_edt(body[k], sampling=_spacing_yx(planning_hu))
        array[k][body[k] & (depth <= loss_mm)] = AIR_HU
    return _like(planning_hu, array)


def with_spherical_lesion(
    planning_hu: sitk.Image,
    center: LpsPoint,
    radius_mm: float,
    value_hu: float = SOFT_TISSUE_HU,
    edge_mm: float = 1.0,
) -> sitk.Image:
    """``planning_hu`` with a sphere of ``value_hu`` (soft edge of width ``edge_mm``)."""
    if not (math.isfinite(radius_mm) and radius_mm > 0):
        raise InputError(f"radius_mm = {radius_mm!r} must be a positive number of mm")
    array = sitk.GetArrayFromImage(planning_hu).astype(np.float32)
    c = center.as_array()
    r = np.sqrt(sum((coordinate_mm(planning_hu, a) - np.float32(c[a])) ** 2 for a in range(3)))
    weight = np.clip(0.5 - (r - radius_mm) / max(edge_mm, 1e-6), 0.0, 1.0).astype(np.float32)
    array = (1 - weight) * array + weight * np.float32(value_hu)
    return _like(planning_hu, array)


def with_couch(
    planning_hu: sitk.Image,
    *,
    gap_mm: float = 0.0,
    skin_mm: float = 2.0,
    core_mm: float = 40.0,
    skin_hu: float = 400.0,
    core_hu: float = -900.0,
) -> sitk.Image:
    """The planning couch removed and a flat sandwich couch top under the patient.

    Assumes a supine patient in an image whose direction is axial (the couch plane is a plane of
    constant LPS y).
    """
    array = sitk.GetArrayFromImage(planning_hu).astype(np.float32)
    body = body_mask(array, _spacing_yx(planning_hu))
    if not body.any():
        raise InputError("no body found in the planning CT to put on a couch")
    array[~body] = AIR_HU
    y = np.broadcast_to(coordinate_mm(planning_hu, 1), array.shape)
    top_mm = float(y[body].max()) + gap_mm
    depth = y - top_mm  # > 0 below the couch top
    skins = ((depth > 0) & (depth <= skin_mm)) | (
        (depth > skin_mm + core_mm) & (depth <= 2 * skin_mm + core_mm)
    )
    core = (depth > skin_mm) & (depth <= skin_mm + core_mm)
    array[skins] = skin_hu
    array[core] = core_hu
    return _like(planning_hu, array)

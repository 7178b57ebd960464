# SimpleITK ships no annotations; its calls are the only untyped ones here.
# mypy: disable-error-code="no-untyped-call"
"""Body outlines on CT and MVCT, and the signed distance between two outlines, slice by slice.

Pure numpy/scipy on ``(z, y, x)`` arrays of axial slices (the layout of
``sitk.GetArrayFromImage``); physical sizes come in as the in-plane pixel spacing (mm).

Body by threshold (:func:`body_mask`), per axial slice:

1. ``values > threshold`` after an in-plane Gaussian of SD ``smoothing_mm`` (MVCT noise is
   25–50 HU; the threshold sits half-way between air, −1000, and water, 0, where a blurred
   step edge crosses it at the true edge whatever the blur);
2. a morphological opening with a disc of radius ``opening_mm``: removes couch shells, sheets,
   mask straps and thin bridges narrower than twice the radius (a TomoTherapy couch top is a
   few-mm carbon-fibre skin over foam). A solid couch touching the body over a broad area is
   not separated — state that to users;
3. connected components: the largest, and every other one of at least ``min_part_fraction`` of
   its area (arms), are kept; small ones (couch rails, cables, noise) are dropped;
4. holes are filled (lungs, airways, bowel gas are inside the body).

The image is taken to continue beyond its border as its edge pixels, so a body cut by the
image's extent keeps its shape there (not eroded by the opening, lungs still closed).

Signed distance between outlines (:func:`outline_distances_mm`): for every pair of 4-neighbour
pixels across the *measured* outline, the reference mask's signed distance map (mm, **positive
outside** the reference body, negative inside, half a pixel corrected so that the map is zero
on the reference outline) is averaged over the pair, i.e. read at the measured outline itself.
A positive value means the measured outline lies *outside* the reference one (outward, growth);
a negative value *inside* (inward, shrinkage). Precision ≈ ±half a pixel per point.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

__all__ = [
    "BODY_THRESHOLD",
    "body_mask",
    "outline_distances_mm",
    "signed_distance_mm",
]

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]

#: Half-way between air (−1000) and water (0); suits kV HU and MV numbers alike.
BODY_THRESHOLD = -500.0
OPENING_MM = 4.0
SMOOTHING_MM = 1.0
MIN_PART_FRACTION = 0.03


def _disc(radius_px: float) -> BoolArray:
    r = max(1, int(np.floor(radius_px)))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disc: BoolArray = (yy**2 + xx**2) <= radius_px**2 + 1e-9
    return disc


def body_mask(
    values: npt.ArrayLike,
    spacing_yx_mm: tuple[float, float],
    *,
    threshold: float = BODY_THRESHOLD,
    opening_mm: float = OPENING_MM,
    smoothing_mm: float = SMOOTHING_MM,
    min_part_fraction: float = MIN_PART_FRACTION,
) -> BoolArray:
    """The body, slice by slice, of a ``(z, y, x)`` CT or MVCT array (see the module docstring)."""
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 3:
        raise ValueError(f"body_mask needs a (z, y, x) array, got shape {array.shape}")
    sy, sx = spacing_yx_mm
    if smoothing_mm > 0:
        array = ndimage.gaussian_filter(array, (0.0, smoothing_mm / sy, smoothing_mm / sx))
    above = array > threshold
    disc = _disc(opening_mm / min(sy, sx)) if opening_mm > 0 else None
    # the image continues beyond its border as its edge pixels (a body cut by the planning CT's
    # extent is not eroded there by the opening, nor opened to the outside at its lungs)
    pad = 1 if disc is None else disc.shape[0] // 2 + 1
    out = np.zeros(above.shape, dtype=bool)
    for k in range(above.shape[0]):
        slice_mask = np.pad(above[k], pad, mode="edge")
        if disc is not None:
            slice_mask = ndimage.binary_opening(slice_mask, structure=disc, border_value=0)
        labels, n = ndimage.label(slice_mask)
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel())[1:]
        keep = np.flatnonzero(sizes >= min_part_fraction * sizes.max()) + 1
        out[k] = ndimage.binary_fill_holes(np.isin(labels, keep))[pad:-pad, pad:-pad]
    return out


def signed_distance_mm(mask2d: BoolArray, spacing_yx_mm: tuple[float, float]) -> FloatArray:
    """Signed distance (mm) to the outline of ``mask2d``: positive outside, negative inside.

    Pixel centres one step apart across the outline get ±half a step, so the outline itself,
    half-way between them, reads zero (a symmetric half-pixel correction of the Euclidean
    distance transforms).
    """
    half = 0.5 * min(spacing_yx_mm)
    if not mask2d.any():
        return np.full(mask2d.shape, np.inf)
    if mask2d.all():
        return np.full(mask2d.shape, -np.inf)
    outside = ndimage.distance_transform_edt(~mask2d, sampling=spacing_yx_mm)
    inside = ndimage.distance_transform_edt(mask2d, sampling=spacing_yx_mm)
    result: FloatArray = np.where(mask2d, -(inside - half), outside - half)
    return result


def outline_distances_mm(
    measured2d: BoolArray,
    reference_sdf_mm: FloatArray,
    valid2d: BoolArray,
) -> FloatArray:
    """Signed distances (mm) of the ``measured2d`` outline from the reference outline.

    ``reference_sdf_mm``: :func:`signed_distance_mm` of the reference mask on the same grid.
    Only outline pairs whose both pixels are ``valid2d`` (inside the field of view) count, so a
    mask cut by the reconstruction circle has no outline there.
    """
    values: list[FloatArray] = []
    for axis in (0, 1):
        a = [slice(None), slice(None)]
        b = [slice(None), slice(None)]
        a[axis] = slice(None, -1)
        b[axis] = slice(1, None)
        ta, tb = tuple(a), tuple(b)
        across = (measured2d[ta] != measured2d[tb]) & valid2d[ta] & valid2d[tb]
        pair_mean = 0.5 * (reference_sdf_mm[ta] + reference_sdf_mm[tb])
        values.append(pair_mean[across])
    joined: FloatArray = np.concatenate(values)
    return joined[np.isfinite(joined)]

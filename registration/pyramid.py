"""Resolution levels and masks for the MVCT → planning CT match (SimpleITK + numpy, no elastix).

The registration runs coarse to fine on images this module prepares:

* the planning CT is clipped to a fixed intensity window and block-averaged to each level's voxel
  size once per course (:func:`planning_levels`), so a fraction pays only for its MVCT;
* the MVCT is block-averaged the same way, and a fixed-image mask is built per level from
  (a) its reconstruction circle — the padding value outside it is detected, never assumed —
  eroded by :data:`FOV_EDGE_MARGIN_MM` to drop edge artefacts, (b) the anatomy chosen by the mode
  (tissue: the body, bone: bone and a rim around it, full: everything inside the circle),
  (c) the optional region of interest and (d) where the planning CT has data.

Block averaging (``BinShrink``) is the anti-aliasing filter: it is exact for the mean intensity
and an order of magnitude faster than Gaussian smoothing on a 512² MVCT.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from registration.geometry import RigidTransformLps
from registration.result import BoxRoi, Mode, Roi, SphereRoi

#: Planning kV CT values are clipped to this window (HU) before matching: metal and the couch
#: outside it should not spread the mutual-information histogram.
PLANNING_WINDOW_HU = (-1000.0, 2000.0)
#: MVCT values are clipped to this window (MV CT number, HU-like).
DAILY_WINDOW_HU = (-1000.0, 1500.0)
#: Width of the MVCT's reconstruction edge left out of the metric.
FOV_EDGE_MARGIN_MM = 8.0
#: Thresholds on the block-averaged MVCT (MV numbers follow electron density: bone is dim).
BODY_THRESHOLD_HU = -500.0
BONE_THRESHOLD_HU = 160.0
BONE_RIM_MM = 6.0
BODY_RIM_MM = 10.0
#: In bone mode, levels coarser than this match all anatomy (bone is smeared out there).
BONE_FROM_MM = 4.0
#: Bone mode falls back to bone and soft tissue when bone is less than this share of the mask.
MIN_BONE_FRACTION = 0.02


@dataclass(frozen=True, slots=True)
class Level:
    """One resolution level: target voxel size and optimiser effort."""

    spacing_mm: float
    iterations: int
    samples: int


@dataclass(frozen=True)
class DailyLevel:
    image: sitk.Image
    mask: sitk.Image  # sitkUInt8, same grid

    @functools.cached_property
    def centroid_lps_mm(self) -> npt.NDArray[np.float64]:
        """:func:`mask_centroid` of the mask, found once."""
        centroid = mask_centroid(self.mask)
        centroid.setflags(write=False)
        return centroid


def mask_centroid(mask: sitk.Image) -> npt.NDArray[np.float64]:
    """Centre (LPS mm) of the mask's voxels; of the image when the mask is empty."""
    idx = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)
    if idx.size == 0:
        centre_idx = (np.array(mask.GetSize(), dtype=np.float64) - 1) / 2
    else:
        centre_idx = idx.mean(axis=0)[::-1]
    point = mask.TransformContinuousIndexToPhysicalPoint([float(v) for v in centre_idx])
    return np.array(point, dtype=np.float64)


def clip(image: sitk.Image, window: tuple[float, float]) -> sitk.Image:
    clamped: sitk.Image = sitk.Clamp(
        sitk.Cast(image, sitk.sitkFloat32), sitk.sitkFloat32, window[0], window[1]
    )
    return clamped


def shrink_to(image: sitk.Image, spacing_mm: float, min_z_mm: float = 0.0) -> sitk.Image:
    """Block-average ``image`` to about ``spacing_mm`` voxels (never finer than it already is)."""
    native = image.GetSpacing()
    target = (spacing_mm, spacing_mm, max(spacing_mm, min_z_mm))
    factors = [max(1, round(t / s)) for t, s in zip(target, native, strict=True)]
    factors = [min(f, n) for f, n in zip(factors, image.GetSize(), strict=True)]
    if factors == [1, 1, 1]:
        return image
    shrunk: sitk.Image = sitk.BinShrink(image, factors)
    return shrunk


def planning_levels(planning_hu: sitk.Image, levels: tuple[Level, ...]) -> tuple[sitk.Image, ...]:
    """The planning CT at every level, coarse to fine (prepared once per course)."""
    clipped = clip(planning_hu, PLANNING_WINDOW_HU)
    return tuple(shrink_to(clipped, lv.spacing_mm) for lv in levels)


def padding_mask(daily: sitk.Image) -> npt.NDArray[np.bool_]:
    """2-D (y, x) mask of the columns outside the reconstruction circle.

    The padding value is the value found in all four corners of every slice (exactly equal);
    when the corners disagree there is no padding and nothing is masked.
    """
    a = sitk.GetArrayViewFromImage(daily)
    corners = np.stack([a[:, 0, 0], a[:, 0, -1], a[:, -1, 0], a[:, -1, -1]])
    pad = corners.flat[0]
    if not np.all(corners == pad):
        return np.zeros(a.shape[1:], dtype=bool)
    result: npt.NDArray[np.bool_] = np.all(a == pad, axis=0)
    return result


def daily_levels(
    daily: sitk.Image,
    levels: tuple[Level, ...],
    mode: Mode,
    planning: sitk.Image,
) -> tuple[tuple[DailyLevel, ...], list[str]]:
    """The MVCT and its fixed-image mask at every level, coarse to fine, plus warnings.

    Each level is cropped to its mask's bounding box plus :data:`CROP_MARGIN_VOXELS` (the
    reconstruction circle's corners and the air around the body hold nothing the match reads),
    so every later step handles fewer voxels. A region of interest is not applied here: it is
    defined in the planning frame and must be mapped by the current estimate
    (:func:`registration.rigid.register` does it per level with :func:`roi_mask`).
    """
    warnings: list[str] = []
    inside2d = _field_of_view(daily)
    clipped = clip(daily, DAILY_WINDOW_HU)
    images = _shrunk_levels(clipped, levels)
    body = _body_mask(images[0])
    out: list[DailyLevel] = []
    for lv, img in zip(levels, images, strict=True):
        arr = sitk.GetArrayViewFromImage(img)
        mask = np.empty(arr.shape, dtype=bool)
        mask[...] = _level_plane(inside2d, daily, img)
        body_lv = sitk.Resample(body, img, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        tissue = sitk.GetArrayViewFromImage(body_lv).astype(bool)
        # bone is refined on, not captured with: coarse levels see all the anatomy
        level_mode = Mode.TISSUE if mode is Mode.BONE and lv.spacing_mm > BONE_FROM_MM else mode
        anatomy = _anatomy_mask(arr, img, level_mode, tissue)
        too_little = np.count_nonzero(anatomy & mask) < MIN_BONE_FRACTION * np.count_nonzero(mask)
        if level_mode is Mode.BONE and too_little:
            if lv is levels[-1]:
                warnings.append(
                    "bone mode found almost no bone in the MVCT; "
                    "matched bone and soft tissue instead"
                )
            anatomy = tissue
        mask &= anatomy
        mask &= _inside_mask(img, planning)
        out.append(_cropped(img, mask))
    return tuple(out), warnings


#: Voxels kept around the mask's bounding box when a level is cropped (elastix samples the
#: fixed image at random continuous positions in the mask and interpolates linearly).
CROP_MARGIN_VOXELS = 2


def _cropped(img: sitk.Image, mask: npt.NDArray[np.bool_]) -> DailyLevel:
    """``img`` and ``mask`` cut to the mask's bounding box plus the margin (whole if empty)."""
    sel = np.argwhere(mask)
    if sel.size:
        lo = np.maximum(sel.min(axis=0) - CROP_MARGIN_VOXELS, 0)
        hi = np.minimum(sel.max(axis=0) + CROP_MARGIN_VOXELS + 1, mask.shape)
    else:
        lo, hi = np.zeros(3, dtype=int), np.array(mask.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    image = img[box[2], box[1], box[0]]  # SimpleITK slices x, y, z; it keeps the geometry
    m = sitk.GetImageFromArray(np.ascontiguousarray(mask[box], dtype=np.uint8))
    m.CopyInformation(image)
    return DailyLevel(image, m)


def _shrunk_levels(clipped: sitk.Image, levels: tuple[Level, ...]) -> list[sitk.Image]:
    """:func:`shrink_to` for every level, each from the finest level already made whose block
    factors divide its own (block means of equal nested blocks are the block mean: the same
    values as shrinking the full image, at a fraction of the work)."""
    native = clipped.GetSpacing()
    made: dict[tuple[int, ...], sitk.Image] = {(1, 1, 1): clipped}
    out: dict[int, sitk.Image] = {}
    for k in sorted(range(len(levels)), key=lambda i: levels[i].spacing_mm):
        target = (levels[k].spacing_mm,) * 3
        factors = tuple(
            min(max(1, round(t / s)), n)
            for t, s, n in zip(target, native, clipped.GetSize(), strict=True)
        )
        base = max(
            (f for f in made if all(a % b == 0 for a, b in zip(factors, f, strict=True))),
            key=lambda f: int(np.prod(f)),
        )
        step = [a // b for a, b in zip(factors, base, strict=True)]
        image = made[base] if step == [1, 1, 1] else sitk.BinShrink(made[base], step)
        made[factors] = out[k] = image
    return [out[k] for k in range(len(levels))]


def _field_of_view(daily: sitk.Image) -> npt.NDArray[np.bool_]:
    """2-D (y, x): inside the reconstruction circle and more than FOV_EDGE_MARGIN_MM from its
    edge (all true when the MVCT has no padding)."""
    pad2d = padding_mask(daily)
    if not pad2d.any():
        return ~pad2d
    spacing_yx = (daily.GetSpacing()[1], daily.GetSpacing()[0])
    return _edge_distance_mm(pad2d.tobytes(), pad2d.shape, spacing_yx) > FOV_EDGE_MARGIN_MM


@functools.lru_cache(maxsize=4)
def _edge_distance_mm(
    pad_bytes: bytes, shape: tuple[int, ...], spacing_yx: tuple[float, float]
) -> npt.NDArray[np.float64]:
    """Distance (mm) from each in-plane position to the nearest padding pixel. Every MVCT of a
    machine has the same circle, so the answer is kept for the last few circles seen."""
    pad2d = np.frombuffer(pad_bytes, dtype=bool).reshape(shape)
    distance: npt.NDArray[np.float64] = ndimage.distance_transform_edt(~pad2d, sampling=spacing_yx)
    distance.setflags(write=False)
    return distance


def _level_plane(
    plane: npt.NDArray[np.bool_], full: sitk.Image, level: sitk.Image
) -> npt.NDArray[np.bool_]:
    """A full-resolution (y, x) plane on a block-averaged level's in-plane grid: the full-
    resolution pixel nearest each level voxel's centre (what nearest-neighbour resampling picks),
    found from the block factors alone; every slice of an axial series shares it."""
    picks = []
    for axis, n in ((1, plane.shape[0]), (0, plane.shape[1])):  # image axes y, then x
        factor = round(level.GetSpacing()[axis] / full.GetSpacing()[axis])
        centres = factor * np.arange(level.GetSize()[axis]) + (factor - 1) / 2
        picks.append(np.minimum(np.floor(centres + 0.5).astype(int), n - 1))
    return plane[np.ix_(picks[0], picks[1])]


def physical_points(image: sitk.Image) -> npt.NDArray[np.float64]:
    """LPS coordinates (z, y, x, 3) of every voxel centre."""
    size = image.GetSize()
    idx = np.stack(
        np.meshgrid(np.arange(size[2]), np.arange(size[1]), np.arange(size[0]), indexing="ij"),
        axis=-1,
    )[..., ::-1].astype(np.float64)
    d = np.array(image.GetDirection()).reshape(3, 3)
    s = np.array(image.GetSpacing())
    o = np.array(image.GetOrigin())
    result: npt.NDArray[np.float64] = idx @ (d * s).T + o
    return result


def fraction_inside(
    daily_mask: sitk.Image, planning: sitk.Image, daily_to_planning: RigidTransformLps
) -> float:
    """Fraction of the masked MVCT voxels that land inside the planning CT's extent."""
    sel = sitk.GetArrayViewFromImage(daily_mask).astype(bool)
    if not sel.any():
        return 0.0
    inside = _inside_mask(daily_mask, planning, daily_to_planning)
    return float(np.count_nonzero(inside & sel) / np.count_nonzero(sel))


def _inside_mask(
    image: sitk.Image, planning: sitk.Image, daily_to_planning: RigidTransformLps | None = None
) -> npt.NDArray[np.bool_]:
    """Voxels of ``image`` whose centre falls inside ``planning``'s voxel grid.

    The continuous planning index of voxel (i, j, k) is affine in (i, j, k), so it is built by
    broadcasting three 1-D ramps instead of listing every voxel's coordinates.
    """
    to_planning = daily_to_planning or RigidTransformLps.identity()
    d = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    pd = np.array(planning.GetDirection()).reshape(3, 3)
    ps = np.array(planning.GetSpacing())
    # planning continuous index = a @ (i, j, k) + b
    a = (pd.T @ to_planning.rotation @ d) / ps[:, None]
    origin = to_planning.apply_array(np.array([image.GetOrigin()]))[0]
    b = (pd.T @ (origin - np.array(planning.GetOrigin()))) / ps
    nx, ny, nz = image.GetSize()
    ramps = (
        np.arange(nx)[None, None, :],
        np.arange(ny)[None, :, None],
        np.arange(nz)[:, None, None],
    )
    inside = np.ones((nz, ny, nx), dtype=bool)
    for axis, n in enumerate(planning.GetSize()):
        terms = [(a[axis, m], ramp) for m, ramp in enumerate(ramps) if a[axis, m] != 0.0]
        if len(terms) == 1:  # grids aligned on this axis: a 1-D test, broadcast (the usual case)
            c = terms[0][0] * terms[0][1] + b[axis]
        else:
            c = sum((w * ramp for w, ramp in terms), np.full((1, 1, 1), b[axis]))
        inside &= (c >= -0.5) & (c <= n - 0.5)
    return inside


def _anatomy_mask(
    arr: npt.NDArray[np.float32], img: sitk.Image, mode: Mode, tissue: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    if mode is Mode.FULL:
        return np.ones(arr.shape, dtype=bool)
    if mode is Mode.BONE:
        return _dilate(arr > BONE_THRESHOLD_HU, img, BONE_RIM_MM)
    return tissue


def _body_mask(coarse: sitk.Image) -> sitk.Image:
    """The body and a rim of air around it (the skin edge is a strong feature), on a coarse grid.

    Computed once on the coarsest level (cheap) and resampled to the finer ones.
    """
    body = sitk.BinaryThreshold(coarse, BODY_THRESHOLD_HU, 1e9, 1, 0)
    dilated: sitk.Image = sitk.BinaryDilate(body, _radius_vox(coarse, BODY_RIM_MM), sitk.sitkBox)
    return dilated


def region_mask(
    moved_mask: sitk.Image, roi: Roi | None, planning_region: sitk.Image | None
) -> npt.NDArray[np.bool_]:
    """The (z, y, x) voxels of ``moved_mask`` that are set and lie in the planning-frame region.

    ``moved_mask`` is an MVCT level mask whose geometry has been moved by the current daily →
    planning estimate, so its voxel centres are planning-frame positions: the ROI (planning LPS
    mm) and the planning-grid mask ``planning_region`` (non-zero inside; nearest neighbour,
    outside its grid = outside) are evaluated there directly.
    """
    keep: npt.NDArray[np.bool_] = sitk.GetArrayFromImage(moved_mask) > 0
    if planning_region is not None:
        region = sitk.Resample(
            planning_region,
            moved_mask,
            sitk.Transform(),
            sitk.sitkNearestNeighbor,
            0,
            sitk.sitkUInt8,
        )
        keep &= sitk.GetArrayViewFromImage(region) > 0
    if roi is not None:
        keep &= roi_mask(moved_mask, roi)
    return keep


def roi_mask(img: sitk.Image, roi: Roi) -> npt.NDArray[np.bool_]:
    """Voxels of ``img`` whose centre (LPS mm, as ``img``'s geometry says) lies in ``roi``."""
    pts = physical_points(img)
    c = roi.center.as_array()
    if isinstance(roi, SphereRoi):
        result: npt.NDArray[np.bool_] = np.sum((pts - c) ** 2, axis=-1) <= roi.radius_mm**2
        return result
    assert isinstance(roi, BoxRoi)
    half = np.array([roi.half_size_x_mm, roi.half_size_y_mm, roi.half_size_z_mm])
    box: npt.NDArray[np.bool_] = np.all(np.abs(pts - c) <= half, axis=-1)
    return box


def _radius_vox(img: sitk.Image, mm: float) -> list[int]:
    s = img.GetSpacing()
    return [max(1, round(mm / s[i])) for i in range(3)]


def _dilate(mask: npt.NDArray[np.bool_], img: sitk.Image, mm: float) -> npt.NDArray[np.bool_]:
    m = sitk.GetImageFromArray(mask.astype(np.uint8))
    out = sitk.BinaryDilate(m, _radius_vox(img, mm), sitk.sitkBox)
    result: npt.NDArray[np.bool_] = sitk.GetArrayFromImage(out).astype(bool)
    return result

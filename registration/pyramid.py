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

    A region of interest is not applied here: it is defined in the planning frame and must be
    mapped by the current estimate (:func:`registration.rigid.register` does it per level with
    :func:`roi_mask`).
    """
    warnings: list[str] = []
    pad2d = padding_mask(daily)
    # distance (mm) from each in-plane position to the nearest padding pixel, eroding the circle
    spacing_yx = (daily.GetSpacing()[1], daily.GetSpacing()[0])
    edge_mm = ndimage.distance_transform_edt(~pad2d, sampling=spacing_yx) if pad2d.any() else None
    inside2d = ~pad2d if edge_mm is None else edge_mm > FOV_EDGE_MARGIN_MM
    inside = np.broadcast_to(inside2d, sitk.GetArrayViewFromImage(daily).shape)
    fov = sitk.GetImageFromArray(inside.astype(np.uint8))
    fov.CopyInformation(daily)
    clipped = clip(daily, DAILY_WINDOW_HU)
    images = [shrink_to(clipped, lv.spacing_mm) for lv in levels]
    body = _body_mask(images[0])
    out: list[DailyLevel] = []
    for lv, img in zip(levels, images, strict=True):
        fov_lv = sitk.Resample(fov, img, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        arr = sitk.GetArrayFromImage(img)
        mask = sitk.GetArrayFromImage(fov_lv).astype(bool)
        body_lv = sitk.Resample(body, img, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        tissue = sitk.GetArrayFromImage(body_lv).astype(bool)
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
        m = sitk.GetImageFromArray(mask.astype(np.uint8))
        m.CopyInformation(img)
        out.append(DailyLevel(img, m))
    return tuple(out), warnings


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
    i = np.arange(nx)[None, None, :]
    j = np.arange(ny)[None, :, None]
    k = np.arange(nz)[:, None, None]
    inside = np.ones((nz, ny, nx), dtype=bool)
    for axis, n in enumerate(planning.GetSize()):
        c = a[axis, 0] * i + a[axis, 1] * j + a[axis, 2] * k + b[axis]
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

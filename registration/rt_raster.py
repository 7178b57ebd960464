# SimpleITK ships no annotations; its calls are the only untyped ones here.
# mypy: disable-error-code="no-untyped-call"
"""Structures on the planning grid: rasterised masks, the planning region, surface points.

Grid and sampling
-----------------
The grid is a SimpleITK image geometry (origin, spacing, direction in LPS mm; any orthonormal
direction). A contour point ``p`` has continuous index ``(i, j, k) = Dᵀ·(p − origin) / spacing``.
Masks are numpy arrays indexed ``[k, j, i]`` (as ``sitk.GetArrayFromImage``) or ``sitkUInt8``
images with the grid's geometry.

* A contour must lie on one slice plane ``k`` of the grid: every point within
  ``plane_tolerance_mm`` (default ``min(0.1 mm, 10 % of the slice spacing)``) of the plane, and
  ``0 ≤ k < size_k``. Otherwise :class:`~registration.errors.ContourPlaneError` (no
  interpolation: a structure set drawn on another grid must be re-sent for this CT).
* A voxel is inside when its **centre** is inside by the even-odd rule over all contours of the
  ROI on its slice (holes work). A centre exactly on an edge counts as inside on the contour's
  low-i side. Computed with a scanline parity buffer: every edge's crossings with the pixel rows
  are found at once (numpy), each toggles the parity from its crossing column on, and a
  cumulative sum along the row gives inside/outside — no Python loop over points or pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from registration.errors import ContourPlaneError, PlanningPackageError
from registration.frames import FloatArray
from registration.geometry import LpsPoint
from registration.rtstruct import Structure, StructureSet

__all__ = [
    "BoolArray",
    "mask_image",
    "planning_region_mask",
    "rasterize_structure",
    "rasterize_structures",
    "resample_mask",
    "sphere_surface_points_lps_mm",
    "surface_points_lps_mm",
]

BoolArray = npt.NDArray[np.bool_]
DEFAULT_MATCH_MARGIN_MM = 15.0


def rasterize_structure(
    structure: Structure, grid: sitk.Image, *, plane_tolerance_mm: float | None = None
) -> BoolArray:
    """The voxels of ``grid`` inside ``structure`` as a bool array ``[k, j, i]``."""
    ni, nj, nk = grid.GetSize()
    mask = np.zeros((nk, nj, ni), dtype=bool)
    if not structure.contours:
        return mask
    spacing = np.array(grid.GetSpacing(), dtype=np.float64)
    tolerance_mm = (
        min(0.1, 0.1 * float(spacing[2])) if plane_tolerance_mm is None else plane_tolerance_mm
    )
    x0, y0, x1, y1, slices = [], [], [], [], []
    for contour in structure.contours:
        index = _continuous_index(contour.points_lps_mm, grid)
        k = _slice_of(index[:, 2], float(spacing[2]), tolerance_mm, nk, structure)
        start, end = index[:, :2], np.roll(index[:, :2], -1, axis=0)
        x0.append(start[:, 0])
        y0.append(start[:, 1])
        x1.append(end[:, 0])
        y1.append(end[:, 1])
        slices.append(np.full(start.shape[0], k))
    edge_slice = np.concatenate(slices)
    edges = np.stack([np.concatenate(v) for v in (x0, y0, x1, y1)], axis=1)
    for k in np.unique(edge_slice):
        mask[k] = _even_odd_slice(edges[edge_slice == k], ni, nj)
    return mask


def rasterize_structures(structures: Sequence[Structure], grid: sitk.Image) -> BoolArray:
    """The union of several structures' masks (e.g. every PTV), ``[k, j, i]``."""
    ni, nj, nk = grid.GetSize()
    union = np.zeros((nk, nj, ni), dtype=bool)
    for structure in structures:
        union |= rasterize_structure(structure, grid)
    return union


def mask_image(mask: BoolArray, grid: sitk.Image) -> sitk.Image:
    """``mask`` as a ``sitkUInt8`` image (0/1) with the geometry of ``grid``."""
    if mask.shape != tuple(reversed(grid.GetSize())):
        raise PlanningPackageError(
            f"mask shape {mask.shape} does not match the grid size {grid.GetSize()} (i, j, k)"
        )
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(grid)
    return image


def planning_region_mask(
    structure_set: StructureSet,
    match_structure: str,
    grid: sitk.Image,
    *,
    match_margin_mm: float = DEFAULT_MATCH_MARGIN_MM,
) -> sitk.Image:
    """The region that drives the registration, on the planning grid (``sitkUInt8``, 0/1).

    Every voxel whose centre is within ``match_margin_mm`` (Euclidean, mm) of the rasterised
    ``match_structure`` — one ROI by name, or ``"PTV"`` for the union of the PTV-type ROIs.
    ``grid`` must be the planning CT's own grid (the contours lie on its slice planes); for a
    resampled or cropped planning image, pass the result through :func:`resample_mask`.
    """
    if not np.isfinite(match_margin_mm) or match_margin_mm < 0:
        raise PlanningPackageError(
            f"match_margin_mm={match_margin_mm!r} must be a finite number ≥ 0 (mm)."
        )
    structures = structure_set.resolve(match_structure)
    mask = rasterize_structures(structures, grid)
    if not mask.any():
        raise PlanningPackageError(
            f"match structure {match_structure!r} ({', '.join(s.name for s in structures)}) "
            "covers no voxel of the planning CT; choose a structure inside the scan."
        )
    return mask_image(_dilate_mm(mask, grid, match_margin_mm), grid)


def resample_mask(mask: sitk.Image, grid: sitk.Image) -> sitk.Image:
    """``mask`` on another grid of the same frame (nearest neighbour, 0 outside), ``sitkUInt8``."""
    return sitk.Resample(
        sitk.Cast(mask, sitk.sitkUInt8),
        grid,
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        0,
        sitk.sitkUInt8,
    )


def surface_points_lps_mm(mask: BoolArray, grid: sitk.Image) -> FloatArray:
    """Centres (LPS mm, (N, 3)) of the mask's voxels that have a 6-neighbour outside it."""
    if not mask.any():
        return np.empty((0, 3))
    interior = ndimage.binary_erosion(mask, border_value=0)
    k, j, i = np.nonzero(mask & ~interior)
    return _physical_points(np.stack([i, j, k], axis=1).astype(np.float64), grid)


def sphere_surface_points_lps_mm(
    center: LpsPoint, radius_mm: float = 50.0, count: int = 2000
) -> FloatArray:
    """``count`` nearly uniform points on the sphere (Fibonacci lattice), LPS mm, (N, 3)."""
    n = np.arange(count, dtype=np.float64) + 0.5
    polar_rad = np.arccos(1.0 - 2.0 * n / count)
    azimuth_rad = np.pi * (1.0 + 5.0**0.5) * n
    unit = np.stack(
        [
            np.cos(azimuth_rad) * np.sin(polar_rad),
            np.sin(azimuth_rad) * np.sin(polar_rad),
            np.cos(polar_rad),
        ],
        axis=1,
    )
    result: FloatArray = center.as_array() + radius_mm * unit
    return result


def _direction(grid: sitk.Image) -> FloatArray:
    return np.array(grid.GetDirection(), dtype=np.float64).reshape(3, 3)


def _continuous_index(points_lps_mm: FloatArray, grid: sitk.Image) -> FloatArray:
    origin = np.array(grid.GetOrigin(), dtype=np.float64)
    spacing = np.array(grid.GetSpacing(), dtype=np.float64)
    result: FloatArray = ((points_lps_mm - origin) @ _direction(grid)) / spacing
    return result


def _physical_points(index: FloatArray, grid: sitk.Image) -> FloatArray:
    origin = np.array(grid.GetOrigin(), dtype=np.float64)
    spacing = np.array(grid.GetSpacing(), dtype=np.float64)
    result: FloatArray = (index * spacing) @ _direction(grid).T + origin
    return result


def _slice_of(
    k_values: FloatArray,
    spacing_k_mm: float,
    tolerance_mm: float,
    nk: int,
    structure: Structure,
) -> int:
    k = int(np.rint(np.mean(k_values)))
    off_mm = float(np.max(np.abs(k_values - k))) * spacing_k_mm
    where = f"ROI {structure.name!r} (number {structure.roi_number})"
    if off_mm > tolerance_mm:
        raise ContourPlaneError(
            f"{where} has a contour {off_mm:.2f} mm off the nearest slice plane of the planning "
            f"CT (slices every {spacing_k_mm:g} mm, tolerance {tolerance_mm:g} mm); it was drawn "
            "on another grid or is not axial. Send the structure set drawn on this CT."
        )
    if not 0 <= k < nk:
        raise ContourPlaneError(
            f"{where} has a contour on slice index {k}, outside the planning CT's {nk} slices; "
            "send the structure set drawn on this CT."
        )
    return k


def _even_odd_slice(edges: FloatArray, ni: int, nj: int) -> BoolArray:
    """Pixel centres inside the polygons ``edges`` (rows x0, y0, x1, y1 in index units)."""
    x0, y0, x1, y1 = edges.T
    low, high = np.minimum(y0, y1), np.maximum(y0, y1)
    # rows j crossed by an edge: low ≤ j < high (half-open, so a vertex on a row counts once
    # and horizontal edges never count)
    first = np.clip(np.ceil(low), 0, nj).astype(np.int64)
    stop = np.clip(np.ceil(high), 0, nj).astype(np.int64)
    counts = np.maximum(stop - first, 0)
    total = int(counts.sum())
    parity = np.zeros((nj, ni + 1), dtype=np.int64)
    if total == 0:
        return np.zeros((nj, ni), dtype=bool)
    edge = np.repeat(np.arange(edges.shape[0]), counts)
    offsets = np.cumsum(counts) - counts
    row = first[edge] + (np.arange(total) - offsets[edge])
    t = (row - y0[edge]) / (y1[edge] - y0[edge])
    x_cross = x0[edge] + t * (x1[edge] - x0[edge])
    column = np.clip(np.ceil(x_cross), 0, ni).astype(np.int64)
    toggles = np.bincount(row * (ni + 1) + column, minlength=nj * (ni + 1))
    parity += toggles.reshape(nj, ni + 1)
    inside: BoolArray = (np.cumsum(parity, axis=1)[:, :ni] % 2).astype(bool)
    return inside


def _dilate_mm(mask: BoolArray, grid: sitk.Image, margin_mm: float) -> BoolArray:
    """Voxels within ``margin_mm`` of ``mask`` (exact Euclidean distance, on a cropped box)."""
    if margin_mm == 0:
        return mask.copy()
    spacing_kji = np.array(grid.GetSpacing(), dtype=np.float64)[::-1]
    reach = np.ceil(margin_mm / spacing_kji).astype(int) + 1
    where = np.nonzero(mask)
    lo = [max(0, int(w.min()) - r) for w, r in zip(where, reach, strict=True)]
    hi = [min(n, int(w.max()) + r + 1) for w, n, r in zip(where, mask.shape, reach, strict=True)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    distance_mm = ndimage.distance_transform_edt(~mask[box], sampling=spacing_kji)
    result = np.zeros_like(mask)
    result[box] = distance_mm <= margin_mm
    return result

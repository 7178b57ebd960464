# SimpleITK ships no annotations; its calls are the only untyped ones here.
# mypy: disable-error-code="no-untyped-call"
"""Outlines of a mask on a plane of its grid, in LPS mm: for writing contours and drawing views.

A mask is a bool array ``[k, j, i]`` on a SimpleITK grid (see :mod:`registration.rt_raster`).
The section at ``index`` along a grid axis (:class:`GridAxis`: ``K`` = constant slice, axial for
an axial CT; ``J`` = constant row, coronal; ``I`` = constant column, sagittal) is padded with one
empty voxel and contoured at level 0.5 by marching squares (contourpy). Every outline is closed
and runs half-way between inside and outside voxel centres, so rasterising the axial outlines by
voxel centres (even-odd rule) gives back the mask exactly; collinear vertices are dropped.
To draw an outline on today's image, map its points with the transform in question
(``RigidTransformLps.apply_array``).
"""

from __future__ import annotations

from enum import IntEnum, unique

import contourpy
import numpy as np
import SimpleITK as sitk

from registration.errors import PlanningPackageError
from registration.frames import FloatArray
from registration.rt_raster import BoolArray

__all__ = ["GridAxis", "mask_contours_lps_mm", "mask_section_lps_mm"]


@unique
class GridAxis(IntEnum):
    """The grid index held constant on a section (SimpleITK order i, j, k)."""

    I = 0  # noqa: E741 — the grid's own index name; sagittal on an axial CT
    J = 1  #: coronal on an axial CT
    K = 2  #: axial: the slices, where RT Structure Set contours lie


def mask_section_lps_mm(
    mask: BoolArray, grid: sitk.Image, axis: GridAxis, index: int
) -> list[FloatArray]:
    """Closed outlines (each (N, 3), LPS mm) of ``mask`` on the plane ``axis = index``."""
    _check_shape(mask, grid)
    size = grid.GetSize()[axis]
    if not 0 <= index < size:
        raise PlanningPackageError(
            f"section index {index} is outside 0..{size - 1} along {axis.name}"
        )
    # the 2-D section as rows × columns, and which grid axes those are
    if axis is GridAxis.K:
        section, row_axis, column_axis = mask[index], 1, 0
    elif axis is GridAxis.J:
        section, row_axis, column_axis = mask[:, index, :], 2, 0
    else:
        section, row_axis, column_axis = mask[:, :, index], 2, 1
    if not section.any():
        return []
    generator = contourpy.contour_generator(
        z=np.pad(section.astype(np.float64), 1), line_type=contourpy.LineType.Separate
    )
    outlines = []
    for line in generator.lines(0.5):
        column_row = _without_collinear(np.asarray(line, dtype=np.float64)[:-1] - 1.0)
        if column_row.shape[0] < 3:
            continue
        ijk = np.full((column_row.shape[0], 3), float(index))
        ijk[:, column_axis] = column_row[:, 0]
        ijk[:, row_axis] = column_row[:, 1]
        outlines.append(_physical(ijk, grid))
    return outlines


def mask_contours_lps_mm(mask: BoolArray, grid: sitk.Image) -> list[tuple[int, FloatArray]]:
    """Closed axial contours ``(k, points (N, 3) LPS mm)`` of a mask, slice by slice."""
    _check_shape(mask, grid)
    return [
        (int(k), outline)
        for k in np.nonzero(mask.any(axis=(1, 2)))[0]
        for outline in mask_section_lps_mm(mask, grid, GridAxis.K, int(k))
    ]


def _check_shape(mask: BoolArray, grid: sitk.Image) -> None:
    if mask.shape != tuple(reversed(grid.GetSize())):
        raise PlanningPackageError(f"mask shape {mask.shape} does not match grid {grid.GetSize()}")


def _physical(index: FloatArray, grid: sitk.Image) -> FloatArray:
    spacing = np.array(grid.GetSpacing(), dtype=np.float64)
    direction = np.array(grid.GetDirection(), dtype=np.float64).reshape(3, 3)
    result: FloatArray = (index * spacing) @ direction.T + np.array(grid.GetOrigin())
    return result


def _without_collinear(points: FloatArray) -> FloatArray:
    before = points - np.roll(points, 1, axis=0)
    after = np.roll(points, -1, axis=0) - points
    turn = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    result: FloatArray = points[np.abs(turn) > 1e-9]
    return result

# SimpleITK ships no annotations; its calls are the only untyped ones here.
# mypy: disable-error-code="no-untyped-call"
"""How much the anatomy has changed since planning, measured on today's MVCT after the rigid match.

``measure_anatomy(planning_hu, daily_mv, planning_to_daily, ...)`` → :class:`AnatomyFigures`.
``planning_to_daily`` is ``M`` (LPS mm) as everywhere in the core: the anatomy at planning point
``p`` is at ``M·p`` in the MVCT. The planning side is mapped into the MVCT through ``M``, so every
figure is in the MVCT's frame and only within its scanned length, on a working grid of the MVCT's
own slices and ``working_pixel_mm`` pixels.

Body outline
    The planning body is the EXTERNAL structure when given (a mask on the planning grid), else
    the planning CT thresholded (:mod:`registration.anatomy_body`: −500, couch shells removed by
    an opening, holes filled). The MVCT body uses the same recipe on MV numbers (air −1000, water
    0, so the same half-way threshold). Only the MVCT's reconstruction circle minus
    ``fov_margin_mm`` counts (outside it is padding; the body may be cut by the circle), and only
    slices the planning CT covers entirely. Per slice: the signed distance of the MVCT outline
    from the planning outline (**positive outward**, i.e. the body is larger today; negative
    inward, weight loss), its mean, the largest inward and outward values, and both areas.

Residual misfit in the target region
    In the PTV (a mask on the planning grid) or, without one, the ``sphere_radius_mm`` sphere
    around the isocentre: a gradient-weighted normalised-gradient-field misfit (after Haber &
    Modersitzki, "Intensity gradient based registration and fusion of multi-modal images",
    Methods Inf Med 46:292–299, 2007)::

        misfit = 1 − Σ |∇f|·|∇g|·cos²θ / Σ |∇f|·|∇g|

    over the region's voxels, with in-plane gradients of both images smoothed by
    ``misfit_smoothing_mm``; θ is the angle between the gradients. It depends on edge directions
    only — not on kV/MV contrast, not on edge polarity, not on either image's scale — and is 0
    when every edge lies where it lay at planning. The planning CT is averaged over each MVCT
    slice thickness first so that the slice profile does not count as misfit. Its absolute
    value depends on noise and anatomy; the alert (:mod:`registration.anatomy_alert`) compares
    it with the course's first fractions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from registration.anatomy_body import (
    BODY_THRESHOLD,
    BoolArray,
    body_mask,
    outline_distances_mm,
    signed_distance_mm,
)
from registration.errors import InputError
from registration.geometry import LpsPoint, RigidTransformLps
from registration.pyramid import padding_mask

__all__ = [
    "AnatomyFigures",
    "AnatomyOptions",
    "Mask",
    "SliceFigures",
    "measure_anatomy",
]

#: A structure as a mask on the planning CT's grid: a SimpleITK image (non-zero inside) or a
#: numpy bool array of shape (z, y, x) = ``sitk.GetArrayFromImage(planning)``'s shape.
Mask = sitk.Image | npt.NDArray[np.bool_]

Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class AnatomyOptions:
    """How the anatomy is measured (see the module docstring)."""

    working_pixel_mm: float = 1.5  #: in-plane pixel of the working grid
    planning_threshold_hu: float = BODY_THRESHOLD  #: body threshold on the kV planning CT
    daily_threshold_mv: float = BODY_THRESHOLD  #: body threshold on MV numbers
    fov_margin_mm: float = 10.0  #: reconstruction-circle edge left out
    min_body_area_mm2: float = 2000.0  #: slices with less planning body are skipped
    sphere_radius_mm: float = 50.0  #: misfit region without a PTV
    misfit_smoothing_mm: float = 2.0  #: in-plane Gaussian SD before the gradients

    def __post_init__(self) -> None:
        for name in ("working_pixel_mm", "sphere_radius_mm", "misfit_smoothing_mm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"{name} = {value!r} must be a positive number of millimetres")


@dataclass(frozen=True, slots=True)
class SliceFigures:
    """Body outline figures of one MVCT slice (LPS ``z_mm`` of its centre)."""

    z_mm: float
    mean_surface_mm: float  #: mean signed distance, positive outward (body larger than planned)
    max_inward_mm: float  #: largest inward distance, ≥ 0
    max_outward_mm: float  #: largest outward distance, ≥ 0
    planning_area_mm2: float  #: planning body (mapped), inside the usable field of view
    daily_area_mm2: float  #: MVCT body, same region

    @property
    def area_change_percent(self) -> float:
        return 100.0 * (self.daily_area_mm2 - self.planning_area_mm2) / self.planning_area_mm2


@dataclass(frozen=True, slots=True)
class AnatomyFigures:
    """What :func:`measure_anatomy` found for one fraction; ``to_dict`` is the JSON form.

    ``mean_surface_mm`` is the mean signed outline distance over every outline point of every
    slice (positive outward, negative inward: weight loss); ``area_change_percent`` is the change
    of the summed cross-sectional area over the measured slices (negative: smaller today).
    ``misfit`` is None when the target region holds too few voxels in the scan.
    """

    slices: tuple[SliceFigures, ...]
    mean_surface_mm: float
    max_inward_mm: float
    max_outward_mm: float
    area_change_percent: float
    misfit: float | None
    misfit_region: str  #: "ptv" or "sphere"
    body_source: str  #: "external" or "threshold"
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean_surface_mm": round(self.mean_surface_mm, 3),
            "max_inward_mm": round(self.max_inward_mm, 3),
            "max_outward_mm": round(self.max_outward_mm, 3),
            "area_change_percent": round(self.area_change_percent, 3),
            "misfit": None if self.misfit is None else round(self.misfit, 5),
            "misfit_region": self.misfit_region,
            "body_source": self.body_source,
            "warnings": list(self.warnings),
            "slices": [
                {
                    "z_mm": round(s.z_mm, 3),
                    "mean_surface_mm": round(s.mean_surface_mm, 3),
                    "max_inward_mm": round(s.max_inward_mm, 3),
                    "max_outward_mm": round(s.max_outward_mm, 3),
                    "planning_area_mm2": round(s.planning_area_mm2, 1),
                    "daily_area_mm2": round(s.daily_area_mm2, 1),
                    "area_change_percent": round(s.area_change_percent, 3),
                }
                for s in self.slices
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnatomyFigures:
        """Read back :meth:`to_dict` (as stored with a fraction)."""
        misfit = data["misfit"]
        return cls(
            slices=tuple(
                SliceFigures(
                    float(s["z_mm"]),
                    float(s["mean_surface_mm"]),
                    float(s["max_inward_mm"]),
                    float(s["max_outward_mm"]),
                    float(s["planning_area_mm2"]),
                    float(s["daily_area_mm2"]),
                )
                for s in data["slices"]
            ),
            mean_surface_mm=float(data["mean_surface_mm"]),
            max_inward_mm=float(data["max_inward_mm"]),
            max_outward_mm=float(data["max_outward_mm"]),
            area_change_percent=float(data["area_change_percent"]),
            misfit=None if misfit is None else float(misfit),
            misfit_region=str(data["misfit_region"]),
            body_source=str(data["body_source"]),
            warnings=tuple(str(w) for w in data.get("warnings", ())),
        )


def measure_anatomy(
    planning_hu: sitk.Image,
    daily_mv: sitk.Image,
    planning_to_daily: RigidTransformLps,
    *,
    external: Mask | None = None,
    ptv: Mask | None = None,
    isocenter: LpsPoint | None = None,
    options: AnatomyOptions = AnatomyOptions(),  # frozen, so a shared default is safe
) -> AnatomyFigures:
    """Body outline change and target-region misfit of ``daily_mv`` against ``planning_hu``.

    ``isocenter`` (planning LPS mm) centres the misfit sphere when ``ptv`` is None; without
    either, the sphere is centred on the MVCT volume. Raises
    :class:`~registration.errors.InputError` when no slice of the scan can be measured.
    """
    for name, image in (("planning CT", planning_hu), ("MVCT", daily_mv)):
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"the {name} must be a 3-D scalar image")
    daily_to_planning = planning_to_daily.inverse()
    work = _working_grid(daily_mv, options.working_pixel_mm)
    w = options.working_pixel_mm
    bounds = _planning_bounds(planning_hu, work, daily_to_planning)
    external_image = None if external is None else _mask_image(external, planning_hu, "EXTERNAL")
    ptv_image = None if ptv is None else _mask_image(ptv, planning_hu, "PTV")
    planning_hu = _crop(planning_hu, bounds)
    valid2d = _usable_fov(daily_mv, work, options.fov_margin_mm)
    daily = _resample(_padding_as_air(daily_mv), work, None, -1000.0, sitk.sitkLinear)
    covered = _resample(_ones(planning_hu), work, daily_to_planning, 0.0, sitk.sitkNearestNeighbor)

    if external_image is not None:
        planning_body_image = _crop(external_image, bounds)
        body_source = "external"
    else:
        planning_body_image = _threshold_body(planning_hu, options.planning_threshold_hu)
        body_source = "threshold"
    planning_body = (
        _resample(planning_body_image, work, daily_to_planning, 0.0, sitk.sitkLinear) > 0.5
    )
    daily_body = body_mask(daily, (w, w), threshold=options.daily_threshold_mv)

    slices: list[SliceFigures] = []
    all_distances: list[npt.NDArray[np.float64]] = []
    n_valid = int(np.count_nonzero(valid2d))
    for k in range(daily.shape[0]):
        if np.count_nonzero(covered[k][valid2d] > 0) < n_valid:
            continue  # the planning CT does not cover this slice entirely
        planning_area = float(np.count_nonzero(planning_body[k] & valid2d)) * w * w
        if planning_area < options.min_body_area_mm2:
            continue
        sdf = signed_distance_mm(planning_body[k], (w, w))
        distances = outline_distances_mm(daily_body[k], sdf, valid2d)
        if distances.size == 0:
            continue
        all_distances.append(distances)
        z_mm = work.TransformContinuousIndexToPhysicalPoint([0.0, 0.0, float(k)])[2]
        slices.append(
            SliceFigures(
                z_mm=float(z_mm),
                mean_surface_mm=float(distances.mean()),
                max_inward_mm=max(0.0, float(-distances.min())),
                max_outward_mm=max(0.0, float(distances.max())),
                planning_area_mm2=planning_area,
                daily_area_mm2=float(np.count_nonzero(daily_body[k] & valid2d)) * w * w,
            )
        )
    if not slices:
        raise InputError(
            "no MVCT slice shows body inside the planning CT's extent and the field of view: "
            "check the registration and that the planning CT covers the scan"
        )
    joined = np.concatenate(all_distances)
    planning_total = sum(s.planning_area_mm2 for s in slices)
    daily_total = sum(s.daily_area_mm2 for s in slices)

    warnings: list[str] = []
    misfit_region = "ptv" if ptv is not None else "sphere"
    region = None if ptv_image is None else _crop(ptv_image, bounds)
    misfit = _misfit(planning_hu, daily_mv, planning_to_daily, region, isocenter, options)
    if misfit is None:
        warnings.append(f"the {misfit_region} region lies outside the scan: no misfit measured")
    return AnatomyFigures(
        slices=tuple(slices),
        mean_surface_mm=float(joined.mean()),
        max_inward_mm=max(s.max_inward_mm for s in slices),
        max_outward_mm=max(s.max_outward_mm for s in slices),
        area_change_percent=100.0 * (daily_total - planning_total) / planning_total,
        misfit=misfit,
        misfit_region=misfit_region,
        body_source=body_source,
        warnings=tuple(warnings),
    )


def _planning_bounds(
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


def _crop(image: sitk.Image, bounds: tuple[tuple[int, int], ...]) -> sitk.Image:
    (x0, x1), (y0, y1), (z0, z1) = bounds
    cropped: sitk.Image = image[x0:x1, y0:y1, z0:z1]
    return cropped


def _working_grid(daily: sitk.Image, pixel_mm: float) -> sitk.Image:
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


def _resample(
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


def _ones(image: sitk.Image) -> sitk.Image:
    ones = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(image)
    return ones


def _padding_as_air(daily: sitk.Image) -> sitk.Image:
    pad2d = padding_mask(daily)
    if not pad2d.any():
        return daily
    array = sitk.GetArrayFromImage(daily).astype(np.float32)
    array[:, pad2d] = -1000.0
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(daily)
    return out


def _usable_fov(daily: sitk.Image, grid: sitk.Image, margin_mm: float) -> BoolArray:
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
    result = _resample(one_slice, plane, None, 0.0, sitk.sitkNearestNeighbor)[0] > 0.5
    mask: BoolArray = result
    return mask


def _mask_image(mask: Mask, planning: sitk.Image, name: str) -> sitk.Image:
    if isinstance(mask, sitk.Image):
        if mask.GetSize() != planning.GetSize():
            raise InputError(
                f"the {name} mask has size {mask.GetSize()}, the planning CT {planning.GetSize()}: "
                "give the mask on the planning CT's grid"
            )
        array = sitk.GetArrayFromImage(mask) != 0
    else:
        array = np.asarray(mask, dtype=bool)
        expected = planning.GetSize()[::-1]
        if array.shape != expected:
            raise InputError(
                f"the {name} mask has shape {array.shape}, the planning CT (z, y, x) {expected}: "
                "give the mask on the planning CT's grid"
            )
    if not array.any():
        raise InputError(f"the {name} mask is empty")
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.CopyInformation(planning)
    return image


def _threshold_body(planning: sitk.Image, threshold_hu: float) -> sitk.Image:
    spacing = planning.GetSpacing()
    array = sitk.GetArrayViewFromImage(planning)
    body = body_mask(array, (spacing[1], spacing[0]), threshold=threshold_hu)
    image = sitk.GetImageFromArray(body.astype(np.float32))
    image.CopyInformation(planning)
    return image


def _misfit(
    planning_hu: sitk.Image,
    daily_mv: sitk.Image,
    planning_to_daily: RigidTransformLps,
    ptv: sitk.Image | None,
    isocenter: LpsPoint | None,
    options: AnatomyOptions,
) -> float | None:
    """The gradient-weighted NGF misfit in the region (module docstring); None if no region."""
    daily_to_planning = planning_to_daily.inverse()
    work = _working_grid(daily_mv, options.working_pixel_mm)
    if ptv is not None:
        region = _resample(ptv, work, daily_to_planning, 0.0, sitk.sitkLinear) > 0.5
    else:
        if isocenter is None:
            middle = [(n - 1) / 2.0 for n in daily_mv.GetSize()]
            center = np.array(daily_mv.TransformContinuousIndexToPhysicalPoint(middle))
        else:
            center = planning_to_daily.apply(isocenter).as_array()
        region = _sphere(work, center, options.sphere_radius_mm)
    region &= _usable_fov(daily_mv, work, options.fov_margin_mm)[np.newaxis]
    covered = _resample(_ones(planning_hu), work, daily_to_planning, 0.0, sitk.sitkNearestNeighbor)
    region &= covered > 0
    if np.count_nonzero(region) < 100:
        return None
    # crop to the region (and a margin for the smoothing) before the expensive resampling
    pad = math.ceil(3 * options.misfit_smoothing_mm / options.working_pixel_mm) + 2
    idx = np.argwhere(region)
    lo = np.maximum(idx.min(axis=0) - [0, pad, pad], 0)
    hi = np.minimum(idx.max(axis=0) + [1, pad + 1, pad + 1], region.shape)
    crop = work[int(lo[2]) : int(hi[2]), int(lo[1]) : int(hi[1]), int(lo[0]) : int(hi[0])]
    region = region[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    daily = _resample(_padding_as_air(daily_mv), crop, None, -1000.0, sitk.sitkLinear)
    planning = _slab_average(planning_hu, crop, daily_to_planning)
    w = options.working_pixel_mm
    gf = _gradients(daily, options.misfit_smoothing_mm / w, w)
    gg = _gradients(planning, options.misfit_smoothing_mm / w, w)
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
        sample = _resample(planning, shifted, daily_to_planning, -1000.0, sitk.sitkLinear)
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

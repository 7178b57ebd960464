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
    ``fov_margin_mm`` counts (outside it is padding; the body may be cut by the circle), and of
    it only what lies inside the planning CT by more than the same margin (a planning CT
    reconstructed with a smaller field cuts its body; a warning says so); slices where less than
    half the usable circle is covered are skipped. Per slice: the signed distance of the MVCT
    outline from the planning outline (**positive outward**, i.e. the body is larger today;
    negative inward, weight loss), its mean, the largest inward and outward values, and both
    areas.

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

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from registration.anatomy_body import (
    BODY_THRESHOLD,
    body_mask,
    outline_distances_mm,
    signed_distance_mm,
)
from registration.anatomy_grid import (
    crop,
    ones,
    padding_as_air,
    planning_bounds,
    resample,
    usable_fov,
    working_grid,
)
from registration.anatomy_misfit import target_misfit
from registration.errors import InputError
from registration.geometry import LpsPoint, RigidTransformLps

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
                    # from the rounded areas, so that from_dict → to_dict gives the same text
                    "area_change_percent": round(_rounded_areas(s).area_change_percent, 3),
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


def _rounded_areas(s: SliceFigures) -> SliceFigures:
    return dataclasses.replace(
        s,
        planning_area_mm2=round(s.planning_area_mm2, 1),
        daily_area_mm2=round(s.daily_area_mm2, 1),
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
    work = working_grid(daily_mv, options.working_pixel_mm)
    w = options.working_pixel_mm
    bounds = planning_bounds(planning_hu, work, daily_to_planning)
    external_image = None if external is None else _mask_image(external, planning_hu, "EXTERNAL")
    ptv_image = None if ptv is None else _mask_image(ptv, planning_hu, "PTV")
    planning_hu = crop(planning_hu, bounds)
    valid2d = usable_fov(daily_mv, work, options.fov_margin_mm)
    daily = resample(padding_as_air(daily_mv), work, None, -1000.0, sitk.sitkLinear)
    covered = resample(ones(planning_hu), work, daily_to_planning, 0.0, sitk.sitkNearestNeighbor)

    if external_image is not None:
        planning_body_image = crop(external_image, bounds)
        body_source = "external"
    else:
        planning_body_image = _threshold_body(planning_hu, options.planning_threshold_hu)
        body_source = "threshold"
    planning_body = (
        resample(planning_body_image, work, daily_to_planning, 0.0, sitk.sitkLinear) > 0.5
    )
    daily_body = body_mask(daily, (w, w), threshold=options.daily_threshold_mv)

    slices: list[SliceFigures] = []
    all_distances: list[npt.NDArray[np.float64]] = []
    narrowed = 0
    for k in range(daily.shape[0]):
        region2d = _measurable(valid2d, covered[k] > 0, w, options.fov_margin_mm)
        if region2d is None:
            continue  # the planning CT does not reach this slice
        narrowed += int(np.count_nonzero(region2d) < np.count_nonzero(valid2d))
        planning_area = float(np.count_nonzero(planning_body[k] & region2d)) * w * w
        if planning_area < options.min_body_area_mm2:
            continue
        sdf = signed_distance_mm(planning_body[k], (w, w))
        distances = outline_distances_mm(daily_body[k], sdf, region2d)
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
                daily_area_mm2=float(np.count_nonzero(daily_body[k] & region2d)) * w * w,
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
    if narrowed:
        warnings.append(
            f"the planning CT is narrower than the MVCT's field of view on {narrowed} slice(s): "
            "the body was compared only where both images exist"
        )
    misfit_region = "ptv" if ptv is not None else "sphere"
    region = None if ptv_image is None else crop(ptv_image, bounds)
    misfit = target_misfit(
        planning_hu,
        daily_mv,
        planning_to_daily,
        region,
        isocenter,
        smoothing_mm=options.misfit_smoothing_mm,
        working_pixel_mm=options.working_pixel_mm,
        sphere_radius_mm=options.sphere_radius_mm,
        fov_margin_mm=options.fov_margin_mm,
    )
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


def _measurable(
    valid2d: npt.NDArray[np.bool_],
    covered2d: npt.NDArray[np.bool_],
    pixel_mm: float,
    margin_mm: float,
) -> npt.NDArray[np.bool_] | None:
    """Where a slice can be compared: the usable field of view, minus ``margin_mm`` from the edge
    of the planning CT (its body is cut there); None when less than half the field remains."""
    if np.count_nonzero(covered2d & valid2d) < 0.5 * np.count_nonzero(valid2d):
        return None
    if covered2d[valid2d].all():
        return valid2d
    depth = ndimage.distance_transform_edt(covered2d, sampling=(pixel_mm, pixel_mm))
    region: npt.NDArray[np.bool_] = valid2d & (depth > margin_mm)
    return region


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

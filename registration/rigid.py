"""Rigid 6-DOF registration of today's MVCT to the planning kVCT, and the couch correction.

``register(planning, daily, options)`` answers ``planning_to_daily`` (the anatomy at planning
point p is at M·p in the MVCT, LPS mm) and the couch correction of :mod:`registration.couch`.

Method (parameters in ``registration/params/rigid_mvct_v1.txt``, levels in :data:`LEVELS`):

1. Both images are clipped to an intensity window and block-averaged to 6, 3 and 1.5 mm
   (:mod:`registration.pyramid`); the planning side once per course (:func:`prepare_planning`).
2. Fixed image = MVCT (short, masked to its reconstruction circle, the chosen anatomy and the
   planning CT's extent), moving image = planning CT. Mattes mutual information copes with the
   kV/MV contrast difference without a calibration curve.
3. Coarse to fine, one elastix run per level; each level starts from the previous answer by
   moving the MVCT level image's geometry (origin, direction) by the current estimate, so
   elastix always solves a small residual about the centre of the masked anatomy. The 6 mm level
   captures set-up errors of ±25 mm and ±5° from the identity.
4. An independent second estimate (different metric — normalised MI —, sampler seed and rotation
   centre, 6 and 3 mm only) is compared with the first over a 50 mm sphere around the isocentre;
   a disagreement over :data:`SECOND_OPINION_TOLERANCE_MM` marks the result untrusted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from registration import __version__
from registration.compatibility import SeriesExtent, check_compatible
from registration.couch import CouchCorrection, couch_correction_6dof, couch_correction_for_dof
from registration.elastix_run import PARAMETER_FILE, run_level, to_itk, warm_up
from registration.errors import InputError
from registration.frames import FloatArray
from registration.geometry import LpsPoint, RigidTransformLps
from registration.pyramid import (
    DAILY_WINDOW_HU,
    PLANNING_WINDOW_HU,
    DailyLevel,
    Level,
    daily_levels,
    fraction_inside,
    planning_levels,
)
from registration.result import (
    RegistrationOptions,
    RegistrationQuality,
    RegistrationResult,
)
from registration.volume import CtVolume

LEVELS: tuple[Level, ...] = (
    Level(spacing_mm=10.0, iterations=80, samples=1000),
    Level(spacing_mm=6.0, iterations=100, samples=1500),
    Level(spacing_mm=3.0, iterations=100, samples=1500),
    Level(spacing_mm=1.5, iterations=200, samples=2000),
)
#: The independent second estimate: its own optimiser settings, the first two levels only.
SECOND_OPINION_LEVELS: tuple[Level, ...] = (
    Level(spacing_mm=10.0, iterations=80, samples=1000),
    Level(spacing_mm=6.0, iterations=80, samples=1000),
    Level(spacing_mm=3.0, iterations=80, samples=1000),
)
SECOND_OPINION_TOLERANCE_MM = 2.0
#: Results beyond these are not wrong but are marked for a human look (DOMAIN: TG-142 scale).
MAX_TRUSTED_SHIFT_MM = 20.0
MAX_TRUSTED_ROTATION_DEG = 5.0
MIN_TRUSTED_OVERLAP = 0.80
TRE_SPHERE_RADIUS_MM = 50.0
#: Convergence check: the answer must be a local maximum of an independent MI measure against
#: translations of this size (half the size of the set-up errors that matter).
CONVERGENCE_PROBE_MM = 1.5
CONVERGENCE_TOLERANCE_NATS = 0.0


@dataclass(frozen=True)
class PreparedPlanning:
    """The planning CT ready for matching: its levels (coarse → fine) and its metadata."""

    volume: CtVolume
    levels: tuple[sitk.Image, ...]


def prepare_planning(planning: CtVolume) -> PreparedPlanning:
    """Do the planning-side work once per course; reuse the result for every fraction."""
    return PreparedPlanning(planning, planning_levels(planning.image, LEVELS))


def register(
    planning: CtVolume | PreparedPlanning,
    daily: CtVolume,
    options: RegistrationOptions | None = None,
) -> RegistrationResult:
    """Register ``daily`` (MVCT) to ``planning`` (kVCT); see the module docstring."""
    options = options or RegistrationOptions()
    warm_up()  # the one-off ~8 s import of ITK is not part of a registration's time
    start = time.perf_counter()
    prepared = planning if isinstance(planning, PreparedPlanning) else prepare_planning(planning)
    position = prepared.volume.patient_position
    warnings = list(prepared.volume.warnings) + list(daily.warnings)
    _check_compatible(prepared, daily)

    isocenter = options.isocenter
    if isocenter is None:
        isocenter = _volume_center(daily.image)
        warnings.append(
            "no isocentre given: corrections are evaluated at the centre of the MVCT "
            f"({isocenter.x_mm:.1f}, {isocenter.y_mm:.1f}, {isocenter.z_mm:.1f}) mm LPS"
        )
    fine = prepared.levels[-1]
    levels, mask_warnings = daily_levels(daily.image, LEVELS, options.mode, options.roi, fine)
    warnings += mask_warnings
    if not np.any(sitk.GetArrayViewFromImage(levels[-1].mask)):
        raise InputError(
            "the MVCT and the planning CT share no anatomy to match (empty mask): check that the "
            "planning CT covers the scanned region and the region of interest"
        )

    first, iterations = _solve(prepared.levels, levels, LEVELS, options.random_seed, nmi=False)
    probe = _MiProbe(levels[-1], fine, options.random_seed)
    metric = probe.mi(first)
    converged = bool(np.isfinite(metric)) and probe.is_local_maximum(first)
    planning_to_daily = first.inverse()
    overlap = fraction_inside(levels[-1].mask, fine, first)

    disagreement_mm: float | None = None
    if options.second_opinion:
        n = len(SECOND_OPINION_LEVELS)
        second, _ = _solve(
            prepared.levels[:n],
            levels[:n],
            SECOND_OPINION_LEVELS,
            options.random_seed + 7919,
            nmi=True,
        )
        disagreement_mm = _max_difference_mm(first, second, isocenter)

    correction_6 = couch_correction_6dof(planning_to_daily, isocenter, position)
    correction = couch_correction_for_dof(planning_to_daily, isocenter, position, options.dof)
    seconds = time.perf_counter() - start
    quality = RegistrationQuality(
        final_metric=metric,
        overlap_fraction=overlap,
        iterations=iterations,
        seconds=seconds,
        second_estimate_disagreement_mm=disagreement_mm,
        converged=converged,
    )
    reasons = _untrusted_reasons(quality, correction_6)
    warnings += reasons
    return RegistrationResult(
        planning_to_daily_lps=planning_to_daily,
        couch_correction=correction,
        couch_correction_6dof=correction_6,
        isocenter_lps_mm=isocenter,
        patient_position=position,
        dof=options.dof,
        mode=options.mode,
        quality=quality,
        trusted=not reasons,
        warnings=tuple(warnings),
        engine_version=f"mvct-guide {__version__} / {PARAMETER_FILE}",
    )


def _solve(
    planning: tuple[sitk.Image, ...],
    daily: tuple[DailyLevel, ...],
    schedule: tuple[Level, ...],
    seed: int,
    *,
    nmi: bool,
) -> tuple[RigidTransformLps, int]:
    """Coarse-to-fine elastix runs; returns daily→planning and the iterations used."""
    estimate = RigidTransformLps.identity()
    total_iterations = 0
    overrides: dict[str, tuple[str, ...]] | None = (
        {"Metric": ("NormalizedMutualInformation",)} if nmi else None
    )
    for k, (moving, fixed_level) in enumerate(zip(planning, daily, strict=True)):
        level = schedule[k]
        fixed = _moved_geometry(fixed_level.image, estimate)
        mask = _moved_geometry(fixed_level.mask, estimate)
        center = _mask_centroid(mask)
        if nmi:
            center = center + np.array([10.0, -10.0, 10.0])
        outcome = run_level(
            to_itk(fixed),
            to_itk(moving),
            to_itk(mask, np.uint8),
            center_lps_mm=center,
            iterations=level.iterations,
            samples=level.samples,
            random_seed=seed + k,
            overrides=overrides,
        )
        estimate = estimate.then(outcome.daily_to_planning)
        total_iterations += outcome.iterations
    return estimate, total_iterations


def _moved_geometry(image: sitk.Image, transform: RigidTransformLps) -> sitk.Image:
    """The same pixels with every voxel centre moved by ``transform`` (origin and direction)."""
    out = sitk.Image(image)
    r = transform.rotation
    direction = r @ np.array(image.GetDirection()).reshape(3, 3)
    out.SetOrigin(
        tuple(float(v) for v in r @ np.array(image.GetOrigin()) + transform.translation_mm)
    )
    out.SetDirection(tuple(float(v) for v in direction.ravel()))
    return out


def _mask_centroid(mask: sitk.Image) -> FloatArray:
    arr = sitk.GetArrayViewFromImage(mask)
    idx = np.argwhere(arr > 0)
    if idx.size == 0:
        size = np.array(mask.GetSize(), dtype=np.float64)
        centre_idx = (size - 1) / 2
    else:
        centre_idx = idx.mean(axis=0)[::-1]
    point = mask.TransformContinuousIndexToPhysicalPoint([float(v) for v in centre_idx])
    return np.array(point, dtype=np.float64)


class _MiProbe:
    """Mutual information (nats; higher is better) of the MVCT mask against the planning CT.

    Measured independently of elastix: up to 20 000 masked MVCT voxels, drawn once, mapped into
    the planning CT by a daily → planning transform, linear interpolation, a 32 × 32 histogram
    with fixed bin edges, so values for different transforms are comparable.
    """

    def __init__(self, daily: DailyLevel, planning: sitk.Image, seed: int) -> None:
        sel = np.argwhere(sitk.GetArrayViewFromImage(daily.mask) > 0)
        if len(sel) > 20_000:
            sel = sel[np.random.default_rng(seed).choice(len(sel), 20_000, replace=False)]
        self.usable = len(sel) >= 100
        img = daily.image
        d = np.array(img.GetDirection()).reshape(3, 3)
        self.fixed_values = sitk.GetArrayViewFromImage(img)[tuple(sel.T)]
        self.points = (sel[:, ::-1] * np.array(img.GetSpacing())) @ d.T + np.array(img.GetOrigin())
        self.planning = planning
        self.moving_array = sitk.GetArrayViewFromImage(planning)
        self.fixed_edges = np.linspace(*DAILY_WINDOW_HU, 33)
        self.moving_edges = np.linspace(*PLANNING_WINDOW_HU, 33)

    def mi(self, daily_to_planning: RigidTransformLps) -> float:
        if not self.usable:
            return float("nan")
        pts = daily_to_planning.apply_array(self.points)
        pl = self.planning
        pd = np.array(pl.GetDirection()).reshape(3, 3)
        cont = ((pts - np.array(pl.GetOrigin())) @ pd) / np.array(pl.GetSpacing())
        moving_values = ndimage.map_coordinates(
            self.moving_array, cont[:, ::-1].T, order=1, mode="nearest"
        )
        joint, _, _ = np.histogram2d(
            self.fixed_values, moving_values, bins=(self.fixed_edges, self.moving_edges)
        )
        p = joint / joint.sum()
        px = p.sum(axis=1, keepdims=True)
        py = p.sum(axis=0, keepdims=True)
        nz = p > 0
        return float(np.sum(p[nz] * np.log(p[nz] / (px @ py)[nz])))

    def is_local_maximum(self, estimate: RigidTransformLps) -> bool:
        """True when no translation of ±CONVERGENCE_PROBE_MM along x, y or z improves MI."""
        best = self.mi(estimate)
        for axis in range(3):
            for sign in (-1.0, 1.0):
                step = np.zeros(3)
                step[axis] = sign * CONVERGENCE_PROBE_MM
                moved = estimate.then(RigidTransformLps.from_rotation_translation(np.eye(3), step))
                if self.mi(moved) > best + CONVERGENCE_TOLERANCE_NATS:
                    return False
        return True


def _sphere_points(center: LpsPoint, radius_mm: float) -> FloatArray:
    """A fixed, deterministic set of points filling a sphere (for TRE-like comparisons)."""
    g = np.linspace(-radius_mm, radius_mm, 11)
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    pts = pts[np.sum(pts**2, axis=1) <= radius_mm**2]
    result: FloatArray = pts + center.as_array()
    return result


def _max_difference_mm(a: RigidTransformLps, b: RigidTransformLps, isocenter: LpsPoint) -> float:
    """Largest distance between where ``a`` and ``b`` send points of a 50 mm sphere."""
    pts = _sphere_points(isocenter, TRE_SPHERE_RADIUS_MM)
    # a and b are daily→planning; compare them on daily points near the isocentre
    return float(np.max(np.linalg.norm(a.apply_array(pts) - b.apply_array(pts), axis=1)))


def _untrusted_reasons(quality: RegistrationQuality, full: CouchCorrection) -> list[str]:
    reasons: list[str] = []
    if quality.overlap_fraction < MIN_TRUSTED_OVERLAP:
        reasons.append(
            f"not trusted: only {quality.overlap_fraction:.0%} of the MVCT anatomy lies inside the "
            "planning CT"
        )
    if not quality.converged:
        reasons.append(
            "not trusted: the match is not at the best similarity nearby (not converged); "
            "check the fusion by eye"
        )
    if full.max_abs_translation_mm() > MAX_TRUSTED_SHIFT_MM:
        reasons.append(
            f"not trusted: shift of {full.max_abs_translation_mm():.1f} mm exceeds "
            f"{MAX_TRUSTED_SHIFT_MM:.0f} mm; check the set-up and the match by eye"
        )
    if full.max_abs_rotation_deg() > MAX_TRUSTED_ROTATION_DEG:
        reasons.append(
            f"not trusted: rotation of {full.max_abs_rotation_deg():.1f}° exceeds "
            f"{MAX_TRUSTED_ROTATION_DEG:.0f}°; check the set-up and the match by eye"
        )
    d = quality.second_estimate_disagreement_mm
    if d is not None and d > SECOND_OPINION_TOLERANCE_MM:
        reasons.append(
            f"not trusted: an independent second estimate differs by up to {d:.1f} mm within "
            f"{TRE_SPHERE_RADIUS_MM:.0f} mm of the isocentre"
        )
    return reasons


def _volume_center(image: sitk.Image) -> LpsPoint:
    size = image.GetSize()
    point = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in size])
    return LpsPoint.from_array(point)


def _check_compatible(planning: PreparedPlanning, daily: CtVolume) -> None:
    def z_range(img: sitk.Image) -> tuple[float, float]:
        size = img.GetSize()
        corners = [
            img.TransformIndexToPhysicalPoint([i, j, k])
            for i in (0, size[0] - 1)
            for j in (0, size[1] - 1)
            for k in (0, size[2] - 1)
        ]
        zs = [c[2] for c in corners]
        return min(zs), max(zs)

    check_compatible(
        SeriesExtent(daily.patient_position, *z_range(daily.image)),
        SeriesExtent(planning.volume.patient_position, *z_range(planning.levels[-1])),
    )


__all__ = ["LEVELS", "PreparedPlanning", "prepare_planning", "register"]

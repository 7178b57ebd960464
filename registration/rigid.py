"""Rigid 6-DOF registration of today's MVCT to the planning kVCT, and the couch correction.

``register(planning, daily, options)`` answers ``planning_to_daily`` (the anatomy at planning
point p is at M·p in the MVCT, LPS mm) and the couch correction of :mod:`registration.couch`.
``register_many`` registers several MVCTs of one course against one prepared planning CT.

Method (parameters in ``registration/params/rigid_mvct_v1.txt``, levels in :data:`LEVELS`):

1. Both images are clipped to an intensity window and block-averaged to 10, 6, 3 and 1.5 mm
   (:mod:`registration.pyramid`); the planning side once per course (:func:`prepare_planning`,
   which also keeps the ITK copies elastix reads).
2. Fixed image = MVCT (short, masked to its reconstruction circle, the chosen anatomy and the
   planning CT's extent), moving image = planning CT. Mattes mutual information copes with the
   kV/MV contrast difference without a calibration curve.
3. Global initialisation (:mod:`registration.global_search`): an exhaustive rotation ×
   translation search on the 10 mm level (±60 mm, rotations 0/±7° about each axis) gives the
   start, so the capture range is ±40 mm and ±10° per axis.
4. Coarse to fine, one elastix run per level (:mod:`registration.refine`), each from the
   previous level's answer; a region of interest follows the anatomy, not the MVCT's grid.
5. Doubt (:mod:`registration.trust`): the best *distinct* start of the global search is refined
   too; when it reaches a different optimum whose mutual information is as good (within
   :data:`RIVAL_TOLERANCE_NATS`), the result is not trusted (e.g. one vertebra off); when it is
   clearly better, it becomes the answer. Its refinement stops as soon as it comes within
   :data:`RIVAL_DISTINCT_MM` of the answer: it has then joined the answer's optimum (it is the
   same basin, not a rival). An independent second estimate (normalised MI, other seed and
   rotation centre) starts from the answer perturbed by :data:`PERTURBATION_MM` and
   :data:`PERTURBATION_DEG`; it stops once it agrees within :data:`SECOND_OPINION_AGREES_MM`
   after at least :data:`SECOND_OPINION_MIN_LEVELS` levels, and otherwise runs every level for
   the trust rule to judge. A convergence probe tests translations and rotations.

Where the time goes and what it buys is measured by ``bench/bench_registration.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import SimpleITK as sitk

from registration import __version__
from registration.compatibility import SeriesExtent, check_compatible
from registration.couch import couch_correction_6dof, couch_correction_for_dof
from registration.elastix_run import PARAMETER_FILE, to_itk, warm_up
from registration.errors import InputError, RegistrationFailedError
from registration.frames import FloatArray, rot_x, rot_y, rot_z
from registration.geometry import LpsPoint, RigidTransformLps
from registration.global_search import Candidate, SearchPlanning, prepare_search, search
from registration.pyramid import (
    DailyLevel,
    Level,
    daily_levels,
    fraction_inside,
    planning_levels,
)
from registration.refine import probe_at, refine
from registration.result import (
    RegistrationOptions,
    RegistrationQuality,
    RegistrationResult,
)
from registration.trust import (
    SECOND_OPINION_TOLERANCE_MM,
    SearchFindings,
    max_difference_mm,
    untrusted_reasons,
)
from registration.volume import CtVolume

LEVELS: tuple[Level, ...] = (
    Level(spacing_mm=10.0, iterations=60, samples=1000),
    Level(spacing_mm=6.0, iterations=60, samples=1500),
    Level(spacing_mm=3.0, iterations=80, samples=1500),
    # few iterations with many samples: the last steps of the stochastic optimiser are what
    # limits precision, and a larger sample set quiets them for less work than more iterations
    # (bench/bench_registration.py: same TRE as 200 × 2000 at about 60 % of the time)
    Level(spacing_mm=1.5, iterations=60, samples=4000),
)
#: The first level elastix refines on (the global search runs on level 0). Starting at 6 mm
#: would save a run, but in bone mode a second estimate started 10 mm / 3° off then failed to
#: find enough mask samples at 3 mm: the 10 mm level is kept.
SOLVE_FROM = 0
#: The independent second estimate (and the refinement of the rival start): levels SOLVE_FROM
#: onwards, as many as listed here, with their own optimiser settings.
SECOND_OPINION_LEVELS: tuple[Level, ...] = (
    Level(spacing_mm=10.0, iterations=80, samples=1000),
    Level(spacing_mm=6.0, iterations=80, samples=1000),
    Level(spacing_mm=3.0, iterations=80, samples=1000),
)
#: The second estimate stops refining once it agrees with the answer within this (half the
#: trust rule's SECOND_OPINION_TOLERANCE_MM) after at least SECOND_OPINION_MIN_LEVELS levels;
#: otherwise it runs every level and the rule judges its final disagreement.
SECOND_OPINION_AGREES_MM = SECOND_OPINION_TOLERANCE_MM / 2
SECOND_OPINION_MIN_LEVELS = 2
#: The second estimate starts this far from the answer (translation along (1, −1, 1)/√3, then a
#: rotation about (1, 1, −1)/√3 through the centre of the masked anatomy).
PERTURBATION_MM = 10.0
PERTURBATION_DEG = 3.0
#: A global-search start is "distinct" when it sends the centre of the MVCT anatomy this far from
#: where the best start sends it (less than a cervical vertebra's height, about 20 mm), and a
#: rival when its correlation is within RIVAL_NCC of the best.
DISTINCT_MM = 12.0
RIVAL_NCC = 0.1
#: Two refined optima more than RIVAL_DISTINCT_MM apart are ambiguous when their MI differ by
#: less than RIVAL_TOLERANCE_NATS, or when their starts' correlations differed by less than
#: SEARCH_TIE_NCC (on the benchmark the best distinct start trails the best by 0.024–0.94 in
#: ordinary cases and by 0.0014–0.0024 in one-vertebra slips).
RIVAL_DISTINCT_MM = 5.0
RIVAL_TOLERANCE_NATS = 0.01
SEARCH_TIE_NCC = 0.005


@dataclass(frozen=True)
class PreparedPlanning:
    """The planning CT ready for matching: its levels (coarse → fine), search side, metadata."""

    volume: CtVolume
    levels: tuple[sitk.Image, ...]
    search: SearchPlanning

    @cached_property
    def itk_levels(self) -> tuple[Any, ...]:
        """The levels as ITK images, converted once (loads ITK on first use)."""
        return tuple(to_itk(level) for level in self.levels)


def prepare_planning(planning: CtVolume) -> PreparedPlanning:
    """Do the planning-side work once per course; reuse the result for every fraction."""
    levels = planning_levels(planning.image, LEVELS)
    return PreparedPlanning(planning, levels, prepare_search(levels[0]))


def register_many(
    planning: CtVolume | PreparedPlanning,
    dailies: Iterable[CtVolume],
    options: RegistrationOptions | None = None,
) -> Iterator[RegistrationResult]:
    """Register each MVCT in turn against one planning CT, prepared once (lazily, in order)."""
    prepared = planning if isinstance(planning, PreparedPlanning) else prepare_planning(planning)
    for daily in dailies:
        yield register(prepared, daily, options)


def register(
    planning: CtVolume | PreparedPlanning,
    daily: CtVolume,
    options: RegistrationOptions | None = None,
) -> RegistrationResult:
    """Register ``daily`` (MVCT) to ``planning`` (kVCT); see the module docstring."""
    options = options or RegistrationOptions()
    warm_up()  # the one-off import of ITK is not part of a registration's time
    start = time.perf_counter()
    prepared = planning if isinstance(planning, PreparedPlanning) else prepare_planning(planning)
    position = prepared.volume.patient_position
    warnings = list(prepared.volume.warnings) + list(daily.warnings)
    _check_compatible(prepared, daily)
    _check_region(options, prepared.volume.image)

    isocenter = options.isocenter
    if isocenter is None:
        isocenter = _volume_center(daily.image)
        warnings.append(
            "no isocentre given: corrections are evaluated at the centre of the MVCT "
            f"({isocenter.x_mm:.1f}, {isocenter.y_mm:.1f}, {isocenter.z_mm:.1f}) mm LPS"
        )
    fine = prepared.levels[-1]
    levels, mask_warnings = daily_levels(daily.image, LEVELS, options.mode, fine)
    warnings += mask_warnings
    if not np.any(sitk.GetArrayViewFromImage(levels[-1].mask)):
        raise InputError(
            "the MVCT and the planning CT share no anatomy to match (empty mask): check that the "
            "planning CT covers the scanned region and the region of interest"
        )
    seed = options.random_seed
    center = levels[0].centroid_lps_mm
    candidates = _global_candidates(prepared, levels[0], center)
    first, iterations = refine(
        prepared.itk_levels[SOLVE_FROM:],
        levels[SOLVE_FROM:],
        LEVELS[SOLVE_FROM:],
        seed,
        candidates[0].daily_to_planning,
        options,
        nmi=False,
    )
    probe = probe_at(levels[-1], fine, first, options, seed)
    metric = probe.mi(first)

    findings = SearchFindings(at_search_edge=candidates[0].at_search_edge)
    rival_start = _rival(candidates, center)
    if rival_start is not None:
        n = SOLVE_FROM + len(SECOND_OPINION_LEVELS)
        answer = first
        rival, _ = refine(
            prepared.itk_levels[SOLVE_FROM:n],
            levels[SOLVE_FROM:n],
            SECOND_OPINION_LEVELS,
            seed,
            rival_start.daily_to_planning,
            options,
            nmi=False,
            # once within RIVAL_DISTINCT_MM of the answer it has joined the answer's optimum
            done=lambda e, _: max_difference_mm(answer, e, isocenter) <= RIVAL_DISTINCT_MM,
        )
        other, other_metric = rival, probe.mi(rival)
        if max_difference_mm(first, rival, isocenter) > RIVAL_DISTINCT_MM and (
            other_metric > metric + RIVAL_TOLERANCE_NATS
        ):
            # the rival start leads to a clearly better match: it becomes the answer
            other, other_metric = first, metric
            first, iterations = refine(
                prepared.itk_levels[SOLVE_FROM:],
                levels[SOLVE_FROM:],
                LEVELS[SOLVE_FROM:],
                seed,
                rival,
                options,
                nmi=False,
            )
            probe = probe_at(levels[-1], fine, first, options, seed)
            metric = probe.mi(first)
        apart_mm = max_difference_mm(first, other, isocenter)
        # two distinct optima: as good as each other, or the search could not tell them apart
        tied = candidates[0].ncc - rival_start.ncc < SEARCH_TIE_NCC
        if apart_mm > RIVAL_DISTINCT_MM and (other_metric >= metric - RIVAL_TOLERANCE_NATS or tied):
            findings = SearchFindings(findings.at_search_edge, apart_mm)
    converged = bool(np.isfinite(metric)) and probe.is_local_maximum(first)
    planning_to_daily = first.inverse()
    overlap = fraction_inside(levels[-1].mask, fine, first)

    disagreement_mm: float | None = None
    if options.second_opinion:
        n = SOLVE_FROM + len(SECOND_OPINION_LEVELS)
        answer = first
        second, _ = refine(
            prepared.itk_levels[SOLVE_FROM:n],
            levels[SOLVE_FROM:n],
            SECOND_OPINION_LEVELS,
            seed + 7919,
            _perturbed(first, probe.center),
            options,
            nmi=True,
            done=lambda e, k: (
                k + 1 >= SECOND_OPINION_MIN_LEVELS
                and max_difference_mm(answer, e, isocenter) <= SECOND_OPINION_AGREES_MM
            ),
        )
        disagreement_mm = max_difference_mm(first, second, isocenter)

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
    reasons = untrusted_reasons(quality, correction_6, findings)
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


def _global_candidates(
    prepared: PreparedPlanning, coarse: DailyLevel, center: FloatArray
) -> tuple[Candidate, ...]:
    found = search(prepared.search, coarse, center)
    if not found:
        raise RegistrationFailedError(
            "the global search found no position where the MVCT overlaps the planning CT enough "
            "to compare them; check that the right planning CT was chosen"
        )
    return found


def _rival(candidates: tuple[Candidate, ...], center: FloatArray) -> Candidate | None:
    """The best start distinct from the best one whose correlation is close to the best's.

    Distinct: it sends the centre of the MVCT anatomy more than DISTINCT_MM away from where the
    best start sends it (neighbouring rotation samples of one optimum agree there).
    """
    best = candidates[0]
    target = best.daily_to_planning.apply_array(center[None])[0]
    for found in candidates[1:]:
        if found.ncc < best.ncc - RIVAL_NCC:
            return None
        moved = found.daily_to_planning.apply_array(center[None])[0]
        if np.linalg.norm(moved - target) > DISTINCT_MM:
            return found
    return None


def _perturbed(estimate: RigidTransformLps, center: FloatArray) -> RigidTransformLps:
    """``estimate`` moved by PERTURBATION_MM and PERTURBATION_DEG (daily side, about center)."""
    t = PERTURBATION_MM * np.array([1.0, -1.0, 1.0]) / np.sqrt(3.0)
    a = PERTURBATION_DEG / np.sqrt(3.0)
    r = rot_z(-a) @ rot_y(a) @ rot_x(a)
    step = RigidTransformLps.from_rotation_translation(r, center - r @ center + t)
    return step.then(estimate)


def _check_region(options: RegistrationOptions, planning: sitk.Image) -> None:
    region = options.planning_region
    if region is None:
        return
    if region.GetDimension() != 3:
        raise InputError(
            "planning_region must be a 3-D mask on the planning CT grid, not "
            f"{region.GetDimension()}-D"
        )
    if not np.any(sitk.GetArrayViewFromImage(region)):
        raise InputError("planning_region is empty: give a mask with at least one voxel set")


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


__all__ = ["LEVELS", "PreparedPlanning", "prepare_planning", "register", "register_many"]

"""Set-up error statistics: plain functions over plain data (no I/O, no database, no web).

Give :func:`summarise` one :class:`ShiftRecord` per fraction (the caller picks which shift counts:
see :class:`ShiftSource`) and it returns a :class:`ShiftStatistics`: per patient, per population,
per fraction, and early warnings. ``ShiftStatistics.to_dict()`` is plain JSON (NaN never appears;
undefined values are ``None``).

    >>> import datetime
    >>> day = datetime.date(2024, 3, 4)
    >>> summary = summarise([ShiftRecord("P1", "C1", 1, day, 1.0, -2.0, 0.5, 0.2),
    ...                      ShiftRecord("P1", "C1", 2, day, 3.0, -2.0, 0.5, 0.4)])
    >>> summary.patients[0].lateral.mean_mm, summary.patients[0].lateral.sd_mm
    (2.0, 1.4142135623730951)
    >>> summary.population.lateral.verdict
    <MarginVerdict.TOO_FEW_PATIENTS: 'too_few_patients'>

Definitions (details and sources in :mod:`registration.stats_margins`)
----------------------------------------------------------------------
* Units: translations in mm, roll in degrees, IEC 61217 table axes; signs as given.
* A "patient" of the statistics is a treatment course (``patient_id``, ``course_id``).
* Per patient and axis: ``n`` fractions, systematic error ``m_p`` = mean, random error ``s_p`` =
  sample SD (ddof = 1; ``None`` when ``n = 1``), ``max |x|``.
* Population per axis: ``M`` = mean of ``m_p``, ``Σ`` = SD of ``m_p`` (ddof = 1), ``σ`` = root
  mean square of ``s_p`` over patients with ``n ≥ 2``. Margins (translations only):
  van Herk ``2.5Σ + 0.7σ`` (IJROBP 2000;47:1121), Stroom ``2Σ + 0.7σ`` (IJROBP 1999;43:905), each
  with a 95 % percentile bootstrap interval over patients. The verdict compares the van Herk
  point estimate with the margin in use (3 mm, the PTV margin of the head-and-neck protocol);
  it is ``too_few_patients`` below 10 patients with ``n ≥ 2``, and the numbers are still given.
* Thresholds, kept apart by name (values rounded to 1e-6 first):
  per patient, ``n_beyond_margin`` counts ``|x| > margin`` and ``n_beyond_5mm`` counts
  ``|x| > 5 mm`` (strictly beyond); per fraction, ``..._at_least_3mm`` / ``..._at_least_5mm``
  count fractions with *any* translation axis ``|x| ≥ 3 mm`` / ``≥ 5 mm``. Roll is never
  compared with a mm threshold.
* Fraction vector length: ``sqrt(lateral² + longitudinal² + vertical²)`` in mm.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from typing import Final

import numpy as np

from registration.errors import InputError
from registration.stats_margins import (
    CONFIDENCE_LEVEL,
    MIN_PATIENTS_FOR_VERDICT,
    BootstrapMargins,
    MarginIntervalMm,
    MarginVerdict,
    PopulationErrors,
    bootstrap_margins,
    course_errors,
    margin_verdict,
    population_errors,
    stroom_margin_mm,
    van_herk_margin_mm,
)
from registration.stats_records import (
    COMPARISON_DECIMALS,
    DEFAULT_SHIFT_SOURCE,
    Axis,
    FloatArray,
    ShiftRecord,
    ShiftSource,
    ShiftTable,
    at_least,
    exceeds,
    shift_table,
)
from registration.stats_results import (
    FractionStatistics,
    PatientRotationStats,
    PatientStatistics,
    PatientTranslationStats,
    PopulationRotationStats,
    PopulationStatistics,
    PopulationTranslationStats,
    ShiftStatistics,
)
from registration.stats_warnings import (
    DEFAULT_NAL_FRACTIONS,
    DEFAULT_NAL_THRESHOLD_MM,
    DEFAULT_RUNNING_THRESHOLD_MM,
    EarlyWarning,
    WarningKind,
    early_warnings,
)

__all__ = [
    "CONFIDENCE_LEVEL",
    "DEFAULT_BOOTSTRAP_RESAMPLES",
    "DEFAULT_BOOTSTRAP_SEED",
    "DEFAULT_MARGIN_IN_USE_MM",
    "DEFAULT_SHIFT_SOURCE",
    "MIN_PATIENTS_FOR_VERDICT",
    "Axis",
    "EarlyWarning",
    "FractionStatistics",
    "MarginIntervalMm",
    "MarginVerdict",
    "PatientRotationStats",
    "PatientStatistics",
    "PatientTranslationStats",
    "PopulationRotationStats",
    "PopulationStatistics",
    "PopulationTranslationStats",
    "ShiftRecord",
    "ShiftSource",
    "ShiftStatistics",
    "WarningKind",
    "early_warnings",
    "stroom_margin_mm",
    "summarise",
    "van_herk_margin_mm",
]

DEFAULT_MARGIN_IN_USE_MM: Final = 3.0
DEFAULT_BOOTSTRAP_RESAMPLES: Final = 2000
DEFAULT_BOOTSTRAP_SEED: Final = 20001121  # any fixed number; van Herk 2000, p. 1121
#: the per-patient count threshold "beyond 5 mm" (|x| > 5 mm)
BEYOND_MM: Final = 5.0
#: the per-fraction thresholds "at least 3 mm" and "at least 5 mm" (|x| ≥ t on any axis)
AT_LEAST_MM: Final = (3.0, 5.0)


def summarise(
    records: Sequence[ShiftRecord],
    margin_in_use_mm: float = DEFAULT_MARGIN_IN_USE_MM,
    bootstrap_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
    *,
    as_of: datetime.date | None = None,
    nal_fractions: int = DEFAULT_NAL_FRACTIONS,
    nal_threshold_mm: float = DEFAULT_NAL_THRESHOLD_MM,
    running_threshold_mm: float = DEFAULT_RUNNING_THRESHOLD_MM,
) -> ShiftStatistics:
    """Summarise one shift per fraction into patient, population and fraction statistics.

    ``as_of`` (default: the latest record's date) only sets when the early warnings are
    evaluated (see :func:`early_warnings`); every record counts in the statistics, so select the
    period before calling. The result does not depend on the order of ``records``, and the same
    ``seed`` gives the same bootstrap intervals. Raises
    :class:`~registration.errors.InputError` for a margin that is not a positive number, a
    negative number of resamples, or two shifts for one fraction of a course.
    """
    if not (math.isfinite(margin_in_use_mm) and margin_in_use_mm > 0.0):
        raise InputError(f"margin_in_use_mm={margin_in_use_mm!r}: give the PTV margin in mm, > 0.")
    if isinstance(bootstrap_resamples, bool) or not (
        isinstance(bootstrap_resamples, int) and bootstrap_resamples >= 0
    ):
        raise InputError(
            f"bootstrap_resamples={bootstrap_resamples!r}: give a whole number ≥ 0 "
            "(0 leaves the confidence intervals out; 2000 is usual)."
        )
    table = shift_table(records)
    errors = course_errors(table)
    intervals = bootstrap_margins(errors.mean[:, :3], errors.sd[:, :3], bootstrap_resamples, seed)
    if as_of is None and records:
        as_of = datetime.date.fromordinal(int(table.date_ordinal.max()))
    warnings = early_warnings(  # an empty input has no as_of and no warnings
        records, as_of or datetime.date.min, nal_fractions, nal_threshold_mm, running_threshold_mm
    )

    def translation(j: int) -> PopulationTranslationStats:
        return _population_translation(errors.mean, errors.sd, j, intervals, margin_in_use_mm)

    return ShiftStatistics(
        n_patients=len(table.courses),
        n_fractions=len(records),
        margin_in_use_mm=margin_in_use_mm,
        as_of=as_of,
        bootstrap_resamples=bootstrap_resamples,
        bootstrap_seed=seed,
        patients=_patients(table, errors.mean, errors.sd, margin_in_use_mm),
        population=PopulationStatistics(
            lateral=translation(0),
            longitudinal=translation(1),
            vertical=translation(2),
            roll=_population_rotation(errors.mean[:, 3], errors.sd[:, 3]),
        ),
        fractions=_fractions(table),
        warnings=tuple(warnings),
        notes=_notes(table, intervals, bootstrap_resamples),
    )


def _optional(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _patients(
    table: ShiftTable, mean: FloatArray, sd: FloatArray, margin_in_use_mm: float
) -> tuple[PatientStatistics, ...]:
    if not table.courses:
        return ()
    starts = table.starts
    max_abs = np.maximum.reduceat(np.abs(table.values), starts, axis=0).tolist()
    translations = table.translations_mm
    beyond_margin = np.add.reduceat(
        exceeds(translations, margin_in_use_mm).astype(np.int64), starts, axis=0
    )
    beyond_5mm = np.add.reduceat(exceeds(translations, BEYOND_MM).astype(np.int64), starts, axis=0)
    vector_mm = np.linalg.norm(translations, axis=1)
    vector_mean = (np.add.reduceat(vector_mm, starts) / table.counts).tolist()
    vector_max = np.maximum.reduceat(vector_mm, starts).tolist()
    first_day = np.minimum.reduceat(table.date_ordinal, starts).tolist()
    last_day = np.maximum.reduceat(table.date_ordinal, starts).tolist()
    mean_l, sd_l = mean.tolist(), sd.tolist()
    beyond_margin_l, beyond_5mm_l = beyond_margin.tolist(), beyond_5mm.tolist()

    def translation(g: int, j: int) -> PatientTranslationStats:
        return PatientTranslationStats(
            mean_mm=mean_l[g][j],
            sd_mm=_optional(sd_l[g][j]),
            max_abs_mm=max_abs[g][j],
            n_beyond_margin=beyond_margin_l[g][j],
            n_beyond_5mm=beyond_5mm_l[g][j],
        )

    return tuple(
        PatientStatistics(
            patient_id=patient_id,
            course_id=course_id,
            n_fractions=int(table.counts[g]),
            first_date=datetime.date.fromordinal(first_day[g]),
            last_date=datetime.date.fromordinal(last_day[g]),
            lateral=translation(g, 0),
            longitudinal=translation(g, 1),
            vertical=translation(g, 2),
            roll=PatientRotationStats(mean_l[g][3], _optional(sd_l[g][3]), max_abs[g][3]),
            vector_mean_mm=vector_mean[g],
            vector_max_mm=vector_max[g],
        )
        for g, (patient_id, course_id) in enumerate(table.courses)
    )


def _population_translation(
    mean: FloatArray,
    sd: FloatArray,
    j: int,
    intervals: BootstrapMargins | None,
    margin_in_use_mm: float,
) -> PopulationTranslationStats:
    pop = population_errors(mean[:, j], sd[:, j])
    van_herk = stroom = None
    if pop.systematic_sd is not None and pop.random_rms is not None:
        van_herk = van_herk_margin_mm(pop.systematic_sd, pop.random_rms)
        stroom = stroom_margin_mm(pop.systematic_sd, pop.random_rms)
    van_herk_interval = intervals.van_herk[j] if intervals and van_herk is not None else None
    verdict = margin_verdict(van_herk, margin_in_use_mm, pop.n_courses_with_sd)
    return PopulationTranslationStats(
        n_patients=pop.n_courses,
        n_patients_with_sd=pop.n_courses_with_sd,
        mean_mm=pop.mean,
        systematic_sd_mm=pop.systematic_sd,
        random_rms_mm=pop.random_rms,
        van_herk_margin_mm=van_herk,
        van_herk_interval=van_herk_interval,
        stroom_margin_mm=stroom,
        stroom_interval=intervals.stroom[j] if intervals and stroom is not None else None,
        margin_in_use_mm=margin_in_use_mm,
        verdict=verdict,
        note=_verdict_note(verdict, van_herk, van_herk_interval, margin_in_use_mm, pop),
    )


def _verdict_note(
    verdict: MarginVerdict,
    van_herk_mm: float | None,
    interval: MarginIntervalMm | None,
    margin_in_use_mm: float,
    pop: PopulationErrors,
) -> str:
    n_with_sd = pop.n_courses_with_sd
    if pop.n_courses == 0:
        return "No patients: no margin to estimate."
    if van_herk_mm is None:
        return (
            f"The van Herk margin cannot be estimated: it needs at least 2 patients and one "
            f"patient with 2 or more fractions ({n_with_sd} have 2 or more)."
        )
    ci = f" (95 % CI {interval.low_mm:.1f}–{interval.high_mm:.1f} mm)" if interval else ""
    margin = f"van Herk margin {van_herk_mm:.1f} mm{ci}"
    if verdict is MarginVerdict.TOO_FEW_PATIENTS:
        return (
            f"Too few patients for a verdict: {n_with_sd} with 2 or more fractions, "
            f"{MIN_PATIENTS_FOR_VERDICT} needed. The {margin} is for information only."
        )
    if verdict is MarginVerdict.NOT_ADEQUATE:
        return (
            f"The {margin} exceeds the margin in use ({margin_in_use_mm:.1f} mm): the PTV "
            "margin may be too small on this axis."
        )
    caveat = (
        ", but the interval's upper end exceeds it: keep watching"
        if interval and round(interval.high_mm, COMPARISON_DECIMALS) > margin_in_use_mm
        else ""
    )
    return f"The {margin} is within the margin in use ({margin_in_use_mm:.1f} mm){caveat}."


def _population_rotation(mean: FloatArray, sd: FloatArray) -> PopulationRotationStats:
    pop = population_errors(mean, sd)
    return PopulationRotationStats(
        pop.n_courses, pop.n_courses_with_sd, pop.mean, pop.systematic_sd, pop.random_rms
    )


def _fractions(table: ShiftTable) -> FractionStatistics:
    translations = table.translations_mm
    n = int(translations.shape[0])
    vector_mm = np.linalg.norm(translations, axis=1)
    n_3mm, n_5mm = (
        int(np.count_nonzero(np.any(at_least(translations, t), axis=1))) for t in AT_LEAST_MM
    )
    return FractionStatistics(
        n_fractions=n,
        vector_mean_mm=float(np.mean(vector_mm)) if n else None,
        vector_median_mm=float(np.median(vector_mm)) if n else None,
        vector_max_mm=float(np.max(vector_mm)) if n else None,
        n_any_axis_at_least_3mm=n_3mm,
        n_any_axis_at_least_5mm=n_5mm,
        share_any_axis_at_least_3mm=n_3mm / n if n else None,
        share_any_axis_at_least_5mm=n_5mm / n if n else None,
    )


def _notes(
    table: ShiftTable, intervals: BootstrapMargins | None, bootstrap_resamples: int
) -> tuple[str, ...]:
    if not table.courses:
        return ("No shift records: zero patients and zero fractions, nothing to summarise.",)
    notes = []
    n_single = int(np.count_nonzero(table.counts == 1))
    if n_single:
        notes.append(
            f"{n_single} patient(s) with a single fraction: their random error (SD) is "
            "undefined; they count in M and Σ but not in σ."
        )
    n_people = len({patient_id for patient_id, _ in table.courses})
    if n_people < len(table.courses):
        notes.append(
            f"{len(table.courses)} treatment courses from {n_people} patients: each course "
            "counts as one patient (its own planning CT, its own systematic error)."
        )
    if bootstrap_resamples == 0:
        notes.append("No bootstrap resamples were asked for: the margins have no interval.")
    elif intervals is None:
        notes.append("Confidence intervals need at least 2 patients, one with 2 or more fractions.")
    elif intervals.n_dropped:
        notes.append(
            f"{intervals.n_dropped} of {intervals.n_resamples} bootstrap resamples held only "
            "single-fraction patients (σ undefined) and were left out of the intervals."
        )
    return tuple(notes)

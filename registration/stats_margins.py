"""Systematic and random set-up errors, CTV→PTV margin recipes and their bootstrap intervals.

This module is the implementation behind :mod:`registration.stats` (import from there).

Definitions (per axis; mm for translations, degrees for roll)
-------------------------------------------------------------
For course ``p`` with fractions ``x_p1 … x_pn``:

* systematic error ``m_p = mean(x_pi)``;
* random error ``s_p = sqrt(Σ_i (x_pi − m_p)² / (n − 1))``, the *sample* SD (ddof = 1).
  With ``n = 1`` it is undefined: it is reported as missing and the course is left out of σ.

For the population of courses:

* ``M = mean(m_p)``, the overall mean (a non-zero M points at a process error);
* ``Σ = SD(m_p)`` with ddof = 1, the SD of the systematic errors (needs ≥ 2 courses);
* ``σ = sqrt(mean(s_p²))``, the root mean square of the random errors, over courses with
  ``n ≥ 2``, each course weighted equally (not by its number of fractions).

As is usual (RCR/IPEM/SCoR "On Target", 2008) Σ is not corrected for the ``σ²/n`` that random
errors add to the spread of ``m_p``; with 30 fractions the correction is negligible, with 3 it is
not. Sources: van Herk M et al., "The probability of correct target dosage: dose-population
histograms for deriving treatment margins in radiotherapy", IJROBP 2000;47(4):1121–1135;
Stroom JC et al., "Inclusion of geometrical uncertainties in radiotherapy treatment planning by
means of coverage probability", IJROBP 1999;43(4):905–919.

Bootstrap
---------
Courses are resampled with replacement (all axes together: one resample draws whole courses),
Σ, σ and both margins are recomputed, and the 95 % interval is the 2.5th and 97.5th percentile of
the resampled margins (percentile method, numpy's default linear interpolation). The generator is
``numpy.random.default_rng(seed)``, so the same data and seed give the same interval.
The percentile interval of an SD is known to sit low and cover less than 95 % for small
populations (resampling repeats patients); read it as a guide to the uncertainty, not a bound.
``scipy.stats.bootstrap`` was the first choice; it does not fit cleanly here because a resample
may hold only single-fraction courses, for which σ is undefined: scipy then returns a NaN
interval with a warning, and silencing warnings is process-global, unsafe in a threaded server.
Here such resamples (rare: at most a few per 10⁴ with ≥ 10 multi-fraction courses) are dropped
and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum, unique
from typing import Final, TypeVar

import numpy as np

from registration.stats_records import COMPARISON_DECIMALS, FloatArray, IntArray, ShiftTable

CONFIDENCE_LEVEL: Final = 0.95
#: the verdict needs at least this many courses with ≥ 2 fractions (so both m_p and s_p exist)
MIN_PATIENTS_FOR_VERDICT: Final = 10
#: largest number of resampled values held in memory at once (bounds memory, not the result)
_BOOTSTRAP_BATCH_VALUES: Final = 2_000_000

#: a float, or an array of floats computed elementwise
_Mm = TypeVar("_Mm", float, FloatArray)


def van_herk_margin_mm(systematic_sd_mm: _Mm, random_rms_mm: _Mm) -> _Mm:
    """CTV→PTV margin ``2.5 Σ + 0.7 σ`` (van Herk et al. 2000, IJROBP 47:1121), in mm.

    Gives a minimum CTV dose of at least 95 % of the prescription for 90 % of patients. The
    ``0.7 σ`` is van Herk's linear approximation of ``1.64 (sqrt(σ² + σ_p²) − σ_p)`` for a beam
    penumbra ``σ_p ≈ 3.2 mm``; it assumes many fractions and normally distributed errors.

    >>> van_herk_margin_mm(2.0, 1.5)
    6.05
    """
    return 2.5 * systematic_sd_mm + 0.7 * random_rms_mm


def stroom_margin_mm(systematic_sd_mm: _Mm, random_rms_mm: _Mm) -> _Mm:
    """CTV→PTV margin ``2 Σ + 0.7 σ`` (Stroom et al. 1999, IJROBP 43:905), in mm.

    On average 99 % of the CTV receives at least 95 % of the prescribed dose.

    >>> stroom_margin_mm(2.0, 1.5)
    5.05
    """
    return 2.0 * systematic_sd_mm + 0.7 * random_rms_mm


@unique
class MarginVerdict(StrEnum):
    """How the van Herk margin compares with the margin in use (translations only)."""

    ADEQUATE = "adequate"  #: van Herk margin ≤ margin in use
    NOT_ADEQUATE = "not_adequate"  #: van Herk margin > margin in use
    TOO_FEW_PATIENTS = "too_few_patients"  #: fewer than 10 courses with ≥ 2 fractions


def margin_verdict(
    van_herk_mm: float | None, margin_in_use_mm: float, n_courses_with_sd: int
) -> MarginVerdict:
    """The verdict; numbers are compared after rounding to 1e-6 mm (see ``stats_records``)."""
    if n_courses_with_sd < MIN_PATIENTS_FOR_VERDICT or van_herk_mm is None:
        return MarginVerdict.TOO_FEW_PATIENTS
    if round(van_herk_mm, COMPARISON_DECIMALS) <= margin_in_use_mm:
        return MarginVerdict.ADEQUATE
    return MarginVerdict.NOT_ADEQUATE


@dataclass(frozen=True, slots=True)
class CourseErrors:
    """Per-course systematic and random errors, shape (courses, 4) in the column order AXES."""

    mean: FloatArray  #: m_p
    sd: FloatArray  #: s_p, NaN where the course has one fraction


def course_errors(table: ShiftTable) -> CourseErrors:
    """m_p and s_p (ddof = 1) of every course, summed in fraction order (reproducible bits)."""
    n_axes = table.values.shape[1]
    if not table.courses:
        empty = np.empty((0, n_axes), dtype=np.float64)
        return CourseErrors(mean=empty, sd=empty)
    counts = table.counts[:, None]
    mean = np.add.reduceat(table.values, table.starts, axis=0) / counts
    deviation = table.values - mean[table.course_index]
    sum_sq = np.add.reduceat(deviation**2, table.starts, axis=0)
    sd = np.where(counts >= 2, np.sqrt(sum_sq / np.maximum(counts - 1, 1)), np.nan)
    return CourseErrors(mean=mean, sd=sd)


@dataclass(frozen=True, slots=True)
class PopulationErrors:
    """M, Σ and σ of one axis in the axis unit; None where undefined (see module docstring)."""

    n_courses: int
    n_courses_with_sd: int
    mean: float | None  #: M
    systematic_sd: float | None  #: Σ
    random_rms: float | None  #: σ


def population_errors(mean: FloatArray, sd: FloatArray) -> PopulationErrors:
    """M, Σ, σ from one axis's ``m_p`` and ``s_p`` (NaN = undefined ``s_p``)."""
    defined = sd[np.isfinite(sd)]
    return PopulationErrors(
        n_courses=int(mean.size),
        n_courses_with_sd=int(defined.size),
        mean=float(np.mean(mean)) if mean.size >= 1 else None,
        systematic_sd=float(np.std(mean, ddof=1)) if mean.size >= 2 else None,
        random_rms=float(np.sqrt(np.mean(defined**2))) if defined.size >= 1 else None,
    )


@dataclass(frozen=True, slots=True)
class MarginIntervalMm:
    """A bootstrap percentile interval of a margin, in mm, at :data:`CONFIDENCE_LEVEL`."""

    low_mm: float
    high_mm: float


@dataclass(frozen=True, slots=True)
class BootstrapMargins:
    """Intervals per translation axis (None where not computable) and dropped resamples."""

    van_herk: tuple[MarginIntervalMm | None, ...]
    stroom: tuple[MarginIntervalMm | None, ...]
    n_resamples: int
    n_dropped: int  #: resamples with no multi-fraction course (σ undefined), left out


def bootstrap_margins(
    mean_mm: FloatArray, sd_mm: FloatArray, n_resamples: int, seed: int
) -> BootstrapMargins | None:
    """Percentile intervals of both margins, resampling courses; ``mean_mm``, ``sd_mm`` (G, k).

    Returns None when there is nothing to resample: fewer than 2 courses, no course with
    ≥ 2 fractions, or ``n_resamples == 0``.
    """
    n_courses, n_axes = int(mean_mm.shape[0]), int(mean_mm.shape[1])
    has_sd = np.isfinite(sd_mm[:, 0]) if n_courses else np.zeros(0, dtype=np.bool_)
    if n_courses < 2 or not np.any(has_sd) or n_resamples == 0:
        return None
    rng = np.random.default_rng(seed)
    sd_sq = np.where(has_sd[:, None], sd_mm, 0.0) ** 2
    weight = has_sd.astype(np.float64)
    batch = max(1, _BOOTSTRAP_BATCH_VALUES // (n_courses * n_axes))
    systematic, random = [], []
    for start in range(0, n_resamples, batch):
        index: IntArray = rng.integers(0, n_courses, (min(batch, n_resamples - start), n_courses))
        systematic.append(np.std(mean_mm[index], axis=1, ddof=1))
        n_with_sd = weight[index].sum(axis=1)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            random.append(np.sqrt(sd_sq[index].sum(axis=1) / n_with_sd))
    systematic_b, random_b = np.concatenate(systematic), np.concatenate(random)
    kept = np.all(np.isfinite(random_b), axis=1)
    tail_pct = (100.0 - 100.0 * CONFIDENCE_LEVEL) / 2.0  # 2.5 exactly

    def intervals(margin_b: FloatArray) -> tuple[MarginIntervalMm | None, ...]:
        if not np.any(kept):
            return (None,) * n_axes
        low, high = np.percentile(margin_b[kept], [tail_pct, 100.0 - tail_pct], axis=0)
        pairs = zip(low.tolist(), high.tolist(), strict=True)
        return tuple(MarginIntervalMm(lo, hi) for lo, hi in pairs)

    return BootstrapMargins(
        van_herk=intervals(van_herk_margin_mm(systematic_b, random_b)),
        stroom=intervals(stroom_margin_mm(systematic_b, random_b)),
        n_resamples=n_resamples,
        n_dropped=int(np.count_nonzero(~kept)),
    )

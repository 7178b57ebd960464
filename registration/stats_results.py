"""What :func:`registration.stats.summarise` answers, as plain frozen data with units in names.

This module is the implementation behind :mod:`registration.stats` (import from there).
Translations and rotations have separate types (``…_mm`` and ``…_deg`` fields) so that a roll
can never be read as millimetres. ``None`` means "undefined" (an SD of one fraction, a Σ of one
patient, a margin without σ); no field holds NaN.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum
from typing import Any

from registration.stats_margins import MarginIntervalMm, MarginVerdict
from registration.stats_warnings import EarlyWarning


@dataclass(frozen=True, slots=True)
class PatientTranslationStats:
    """One patient (course), one translation axis, in mm."""

    mean_mm: float  #: systematic error m_p
    sd_mm: float | None  #: random error s_p (ddof = 1); None with a single fraction
    max_abs_mm: float  #: largest |shift|
    n_beyond_margin: int  #: fractions with |shift| > margin in use (strictly beyond)
    n_beyond_5mm: int  #: fractions with |shift| > 5 mm (strictly beyond)


@dataclass(frozen=True, slots=True)
class PatientRotationStats:
    """One patient (course), roll, in degrees; never compared with a mm threshold."""

    mean_deg: float  #: systematic error m_p
    sd_deg: float | None  #: random error s_p (ddof = 1); None with a single fraction
    max_abs_deg: float


@dataclass(frozen=True, slots=True)
class PatientStatistics:
    """Everything about one treatment course."""

    patient_id: str
    course_id: str
    n_fractions: int
    first_date: datetime.date
    last_date: datetime.date
    lateral: PatientTranslationStats
    longitudinal: PatientTranslationStats
    vertical: PatientTranslationStats
    roll: PatientRotationStats
    vector_mean_mm: float  #: mean over fractions of sqrt(lat² + long² + vert²)
    vector_max_mm: float


@dataclass(frozen=True, slots=True)
class PopulationTranslationStats:
    """M, Σ, σ and margins for one translation axis, in mm.

    ``n_patients`` patients count in M and Σ; the ``n_patients_with_sd`` with ≥ 2 fractions count
    in σ and in the 10 needed for a verdict.
    """

    n_patients: int
    n_patients_with_sd: int
    mean_mm: float | None  #: M, mean of m_p
    systematic_sd_mm: float | None  #: Σ, SD of m_p (ddof = 1)
    random_rms_mm: float | None  #: σ, root mean square of s_p
    van_herk_margin_mm: float | None  #: 2.5Σ + 0.7σ
    van_herk_interval: MarginIntervalMm | None  #: bootstrap 95 % percentile interval
    stroom_margin_mm: float | None  #: 2Σ + 0.7σ
    stroom_interval: MarginIntervalMm | None
    margin_in_use_mm: float
    verdict: MarginVerdict
    note: str  #: the verdict in words, for the report


@dataclass(frozen=True, slots=True)
class PopulationRotationStats:
    """M, Σ, σ for roll, in degrees (no margin recipe, no verdict)."""

    n_patients: int
    n_patients_with_sd: int
    mean_deg: float | None
    systematic_sd_deg: float | None
    random_rms_deg: float | None


@dataclass(frozen=True, slots=True)
class PopulationStatistics:
    lateral: PopulationTranslationStats
    longitudinal: PopulationTranslationStats
    vertical: PopulationTranslationStats
    roll: PopulationRotationStats


@dataclass(frozen=True, slots=True)
class FractionStatistics:
    """Over all fractions of all patients; None where there are no fractions."""

    n_fractions: int
    vector_mean_mm: float | None  #: mean 3D length sqrt(lat² + long² + vert²)
    vector_median_mm: float | None
    vector_max_mm: float | None
    n_any_axis_at_least_3mm: int  #: fractions with some translation |x| ≥ 3 mm
    n_any_axis_at_least_5mm: int  #: fractions with some translation |x| ≥ 5 mm
    share_any_axis_at_least_3mm: float | None  #: as a fraction of n_fractions (0–1)
    share_any_axis_at_least_5mm: float | None


@dataclass(frozen=True, slots=True)
class ShiftStatistics:
    """The whole summary; an empty input gives a valid summary with zero patients."""

    n_patients: int  #: treatment courses
    n_fractions: int
    margin_in_use_mm: float
    as_of: datetime.date | None  #: the date the early warnings are evaluated at
    bootstrap_resamples: int
    bootstrap_seed: int
    patients: tuple[PatientStatistics, ...]  #: sorted by patient_id, course_id
    population: PopulationStatistics
    fractions: FractionStatistics
    warnings: tuple[EarlyWarning, ...]
    notes: tuple[str, ...]  #: what a reader must know to trust the numbers

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: dicts, lists, str, int, float, bool, None; dates as ISO strings."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value

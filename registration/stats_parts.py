"""Set-up error statistics in three parts, and Σ corrected for small samples.

The question a daily-imaging margin must answer is not the set-up error *before* the couch move
but what is left *after* it (van Herk, Semin Radiat Oncol 2004;14:52; RCR/IPEM/SCoR "On Target",
2008, which derives margins per correction protocol). :func:`three_part_statistics` therefore
reports, per axis (translations in mm, pitch/roll/yaw in degrees, IEC 61217 table axes, the sign
of a couch *correction* as everywhere in :mod:`registration.couch`):

(a) ``before_correction`` — the measured 6-DOF correction of every fraction: the set-up error
    without image guidance; its van Herk / Stroom margins are what a protocol *without* daily
    imaging would need (labelled so), never compared with the daily-imaging margin. Rotation
    statistics always come from these measured 6-DOF values (never from a refitted correction
    whose unapplied angles are zero).
(b) ``residual`` — the error left after the correction, per fraction: the verification scan's
    6-DOF correction when the fraction has one; otherwise the residual the machine left
    (:attr:`MachineCorrection.residual`: rotations it does not apply, moves under tolerance)
    minus the physician's adjustment (the couch moved by the adjustment too, so what the
    registration says is still to correct is ``machine residual − (signed − proposed)``;
    component-wise, a first-order composition for the small angles involved). Fractions with
    neither are left out and counted. The **margin verdict** is made on this part only.
(c) ``adjustment`` — ``signed − proposed`` for every fraction that has both: the physician's
    correction relative to the registration, an observer-variation figure (M, Σ, σ).

Per patient (treatment course) ``m_p``, ``s_p`` and per population ``M``, ``Σ``, ``σ`` are defined
as in :mod:`registration.stats_margins`.

Σ corrected for small samples
-----------------------------
The spread of per-patient means from ``n_p`` fractions includes the random error: with
independent fractions ``E[Var(m_p)] = Σ² + E[σ_p² / n_p]``. The corrected estimate is::

    Σ_c = sqrt(max(0, Σ² − mean_p(s_p² / n_p)))

the method-of-moments (one-way random-effects ANOVA) estimate of the between-patient variance
component (Searle, Casella, McCulloch, *Variance Components*, Wiley 1992, ch. 3; applied to
set-up errors by Herschtal et al., Phys Med Biol 2013;58:319 — *citation not checked against the
text here*). ``s_p²`` of a single-fraction course is undefined; the pooled ``σ²`` stands in for it.
Σ² − mean(s_p²/n_p) is unbiased for Σ²; its square root is slightly low for few patients (the
usual bias of an SD) and is floored at zero. Both Σ and Σ_c are reported; margins and the
verdict use Σ_c, and each part's notes say so.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum, unique
from typing import Any, Final

import numpy as np

from registration.couch import CouchCorrection
from registration.errors import InputError
from registration.stats_margins import (
    MarginVerdict,
    course_errors,
    margin_verdict,
    population_errors,
    stroom_margin_mm,
    van_herk_margin_mm,
)
from registration.stats_records import FloatArray, ShiftRecord, shift_table
from registration.stats_results import _plain

DEFAULT_MARGIN_IN_USE_MM: Final = 3.0
#: SIX_COLUMNS of stats_records: lateral, longitudinal, vertical, roll, pitch, yaw
_LAT, _LONG, _VERT, _ROLL, _PITCH, _YAW = range(6)


@dataclass(frozen=True, slots=True)
class FractionShifts:
    """Everything one fraction contributes to the three parts (IEC table axes, mm and degrees).

    ``measured``: the registration's full 6-DOF correction. ``proposed``: the correction for the
    machine the registration proposed. ``signed``: what the physician signed (and the couch
    applied). ``machine_residual``: the 6-DOF correction left after the machine's move
    (:attr:`MachineCorrection.residual`). ``verification``: the 6-DOF correction measured on a
    verification scan after the move. Raises :class:`InputError` for a non-finite value.
    """

    patient_id: str
    course_id: str
    fraction_number: int
    date: datetime.date
    measured: CouchCorrection
    proposed: CouchCorrection | None = None
    signed: CouchCorrection | None = None
    machine_residual: CouchCorrection | None = None
    verification: CouchCorrection | None = None

    def __post_init__(self) -> None:
        for name in ("measured", "proposed", "signed", "machine_residual", "verification"):
            value: CouchCorrection | None = getattr(self, name)
            if value is None:
                continue
            for axis, number in value.as_dict().items():
                if not math.isfinite(number):
                    raise InputError(
                        f"{name}.{axis}={number!r} for patient {self.patient_id!r}, course "
                        f"{self.course_id!r}, fraction {self.fraction_number}: not a finite "
                        "number; leave the value out (None) instead."
                    )

    def adjustment(self) -> CouchCorrection | None:
        """``signed − proposed``, or None when either is missing."""
        if self.signed is None or self.proposed is None:
            return None
        return _combine(self.signed, self.proposed, lambda s, p: s - p)

    def residual(self) -> tuple[CouchCorrection, ResidualSource] | None:
        """Part (b) for this fraction and where it comes from; None when unknown."""
        if self.verification is not None:
            return self.verification, ResidualSource.VERIFICATION
        if self.machine_residual is None:
            return None
        adjustment = self.adjustment()
        if adjustment is None:
            return self.machine_residual, ResidualSource.MACHINE
        return (
            _combine(self.machine_residual, adjustment, lambda r, a: r - a),
            ResidualSource.MACHINE,
        )

    def record(self, correction: CouchCorrection) -> ShiftRecord:
        c = correction
        return ShiftRecord(
            self.patient_id,
            self.course_id,
            self.fraction_number,
            self.date,
            c.lateral_mm,
            c.longitudinal_mm,
            c.vertical_mm,
            c.roll_deg,
            c.pitch_deg,
            c.yaw_deg,
        )


@unique
class ResidualSource(StrEnum):
    VERIFICATION = "verification"  #: measured on a verification scan
    MACHINE = "machine"  #: what the machine left, minus the physician's adjustment


@unique
class ErrorPartKind(StrEnum):
    BEFORE_CORRECTION = "before_correction"  #: (a)
    RESIDUAL = "residual"  #: (b)
    ADJUSTMENT = "adjustment"  #: (c)


@dataclass(frozen=True, slots=True)
class TranslationErrors:
    """M, Σ (plain and corrected), σ and margins of one translation axis, mm."""

    n_patients: int
    n_patients_with_sd: int
    mean_mm: float | None
    systematic_sd_mm: float | None  #: Σ, SD of m_p (ddof = 1)
    systematic_sd_corrected_mm: float | None  #: Σ_c (module docstring)
    random_rms_mm: float | None  #: σ
    van_herk_margin_mm: float | None  #: 2.5 Σ_c + 0.7 σ
    stroom_margin_mm: float | None  #: 2 Σ_c + 0.7 σ
    van_herk_margin_plain_mm: float | None  #: 2.5 Σ + 0.7 σ, for comparison
    verdict: MarginVerdict | None  #: part (b) only


@dataclass(frozen=True, slots=True)
class RotationErrors:
    """M, Σ (plain and corrected) and σ of one rotation axis, degrees."""

    n_patients: int
    n_patients_with_sd: int
    mean_deg: float | None
    systematic_sd_deg: float | None
    systematic_sd_corrected_deg: float | None
    random_rms_deg: float | None


@dataclass(frozen=True, slots=True)
class ErrorPart:
    kind: ErrorPartKind
    label: str
    n_patients: int
    n_fractions: int
    lateral: TranslationErrors
    longitudinal: TranslationErrors
    vertical: TranslationErrors
    pitch: RotationErrors
    roll: RotationErrors
    yaw: RotationErrors
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ThreePartStatistics:
    margin_in_use_mm: float
    before_correction: ErrorPart
    residual: ErrorPart
    adjustment: ErrorPart
    n_residual_from_verification: int
    n_residual_from_machine: int
    n_without_residual: int
    n_adjusted_fractions: int  #: fractions whose signed correction differs from the proposed

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def corrected_systematic_sd(mean: FloatArray, sd: FloatArray, counts: FloatArray) -> FloatArray:
    """Σ_c over the last axis (patients) of ``mean``/``sd`` (NaN: undefined) and ``counts``.

    Vectorised: leading axes are independent populations. NaN where Σ is undefined (fewer than
    2 patients) or no patient has an SD.
    """
    mean = np.asarray(mean, dtype=np.float64)
    sd = np.asarray(sd, dtype=np.float64)
    counts = np.broadcast_to(np.asarray(counts, dtype=np.float64), mean.shape)
    defined = np.isfinite(sd)
    sd_sq = np.where(defined, sd, 0.0) ** 2
    n_defined = defined.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled_sq = sd_sq.sum(axis=-1) / n_defined
        per_patient = np.where(defined, sd_sq, pooled_sq[..., None]) / counts
        plain_sq = np.var(mean, axis=-1, ddof=1) if mean.shape[-1] >= 2 else np.nan
        result = np.sqrt(np.maximum(0.0, plain_sq - per_patient.mean(axis=-1)))
    return np.where((n_defined > 0) & (mean.shape[-1] >= 2), result, np.nan)


def three_part_statistics(
    fractions: Sequence[FractionShifts], margin_in_use_mm: float = DEFAULT_MARGIN_IN_USE_MM
) -> ThreePartStatistics:
    """Parts (a), (b) and (c) of the module docstring over ``fractions`` (select the period first).

    Raises :class:`InputError` for a margin that is not a positive number or two records for
    one fraction of a course.
    """
    if not (math.isfinite(margin_in_use_mm) and margin_in_use_mm > 0.0):
        raise InputError(f"margin_in_use_mm={margin_in_use_mm!r}: give the PTV margin in mm, > 0.")
    residuals = [(f, f.residual()) for f in fractions]
    adjustments = [(f, f.adjustment()) for f in fractions]
    n_verified = sum(1 for _, r in residuals if r and r[1] is ResidualSource.VERIFICATION)
    n_machine = sum(1 for _, r in residuals if r and r[1] is ResidualSource.MACHINE)
    n_missing = len(fractions) - n_verified - n_machine
    n_adjusted = sum(1 for _, a in adjustments if a and any(a.as_dict().values()))
    residual_notes = [
        f"Residual per fraction: {n_verified} from verification scans, {n_machine} from what the "
        "machine could not correct minus the physician's adjustment."
    ]
    if n_missing:
        residual_notes.append(f"{n_missing} fraction(s) without a residual are left out.")
    residual_notes.append(
        "The margin verdict uses this part (the error left after daily correction) and the "
        "corrected Σ."
    )
    return ThreePartStatistics(
        margin_in_use_mm=margin_in_use_mm,
        before_correction=_part(
            ErrorPartKind.BEFORE_CORRECTION,
            "Set-up error before correction: the margin a protocol without daily imaging needs",
            [f.record(f.measured) for f in fractions],
            margin_in_use_mm,
            with_verdict=False,
            notes=["Margins here answer: what if there were no daily imaging (not a verdict)."],
        ),
        residual=_part(
            ErrorPartKind.RESIDUAL,
            "Residual error after the daily correction",
            [f.record(r[0]) for f, r in residuals if r is not None],
            margin_in_use_mm,
            with_verdict=True,
            notes=residual_notes,
        ),
        adjustment=_part(
            ErrorPartKind.ADJUSTMENT,
            "Physician's adjustment relative to the registration (observer variation)",
            [f.record(a) for f, a in adjustments if a is not None],
            margin_in_use_mm,
            with_verdict=False,
            notes=[f"{n_adjusted} fraction(s) adjusted by the physician."],
        ),
        n_residual_from_verification=n_verified,
        n_residual_from_machine=n_machine,
        n_without_residual=n_missing,
        n_adjusted_fractions=n_adjusted,
    )


def _part(
    kind: ErrorPartKind,
    label: str,
    records: list[ShiftRecord],
    margin_in_use_mm: float,
    *,
    with_verdict: bool,
    notes: list[str],
) -> ErrorPart:
    table = shift_table(records, all_rotations=True)
    errors = course_errors(table)
    counts = table.counts.astype(np.float64)

    def axis_values(
        j: int,
    ) -> tuple[int, int, float | None, float | None, float | None, float | None]:
        pop = population_errors(errors.mean[:, j], errors.sd[:, j])
        corrected = (
            float(corrected_systematic_sd(errors.mean[:, j], errors.sd[:, j], counts))
            if pop.systematic_sd is not None and pop.random_rms is not None
            else None
        )
        return (
            pop.n_courses,
            pop.n_courses_with_sd,
            pop.mean,
            pop.systematic_sd,
            corrected,
            pop.random_rms,
        )

    def translation(j: int) -> TranslationErrors:
        n, n_sd, mean, plain, corrected, rms = axis_values(j)
        van_herk = stroom = van_herk_plain = None
        if corrected is not None and plain is not None and rms is not None:
            van_herk = van_herk_margin_mm(corrected, rms)
            stroom = stroom_margin_mm(corrected, rms)
            van_herk_plain = van_herk_margin_mm(plain, rms)
        verdict = margin_verdict(van_herk, margin_in_use_mm, n_sd) if with_verdict else None
        return TranslationErrors(
            n, n_sd, mean, plain, corrected, rms, van_herk, stroom, van_herk_plain, verdict
        )

    def rotation(j: int) -> RotationErrors:
        return RotationErrors(*axis_values(j))

    return ErrorPart(
        kind=kind,
        label=label,
        n_patients=len(table.courses),
        n_fractions=len(records),
        lateral=translation(_LAT),
        longitudinal=translation(_LONG),
        vertical=translation(_VERT),
        pitch=rotation(_PITCH),
        roll=rotation(_ROLL),
        yaw=rotation(_YAW),
        notes=(
            *notes,
            "Margins use Σ corrected for small samples, sqrt(max(0, Σ² − mean(s_p²/n_p))); the "
            "plain Σ and its van Herk margin are given beside it.",
        ),
    )


def _combine(
    a: CouchCorrection, b: CouchCorrection, op: Callable[[float, float], float]
) -> CouchCorrection:
    x, y = a.as_dict(), b.as_dict()
    return CouchCorrection(**{name: op(x[name], y[name]) for name in x})

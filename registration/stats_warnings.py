"""Early warnings of a systematic set-up error, in the spirit of (e)NAL protocols.

This module is the implementation behind :mod:`registration.stats` (import from there).

Two checks, per treatment course and translation axis, on the shifts dated on or before
``as_of`` and ordered by fraction number (RCR/IPEM/SCoR "On Target", 2008; de Boer and Heijmen,
IJROBP 2001;50:1350 and 2007;67:1586 for NAL and eNAL):

* ``nal`` — No Action Level: once a course has at least ``nal_fractions`` (N, default 3)
  fractions, the mean of its *first* N shifts estimates the systematic error; a magnitude
  strictly beyond ``nal_threshold_mm`` (default 2.0 mm) suggests a systematic correction. (The
  published NAL protocol corrects that mean whatever its size; the threshold turns it into a
  warning.) The warning stays in later reports: it states a fact about the first N fractions.
* ``running_systematic`` — the weekly check of eNAL: once a course has *more* than N fractions,
  the mean of all its shifts to date is the running estimate of its systematic error; a
  magnitude strictly beyond ``running_threshold_mm`` (default 2.0 mm) asks for a review.

The thresholds are compared after rounding the mean to 1e-6 mm (see
:mod:`registration.stats_records`), so a mean of exactly 2.0 mm is not flagged. Rotations are not
checked. The checks read whichever shift the caller passes (:class:`ShiftSource`): the sign of the
reported mean is that of the input.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum, unique
from typing import Final

import numpy as np

from registration.errors import InputError
from registration.stats_margins import course_errors
from registration.stats_records import (
    TRANSLATION_AXES,
    Axis,
    FloatArray,
    IntArray,
    ShiftRecord,
    ShiftTable,
    exceeds,
    shift_table,
)

DEFAULT_NAL_FRACTIONS: Final = 3
DEFAULT_NAL_THRESHOLD_MM: Final = 2.0
DEFAULT_RUNNING_THRESHOLD_MM: Final = 2.0


@unique
class WarningKind(StrEnum):
    """Which check raised an :class:`EarlyWarning`."""

    NAL = "nal"  #: mean of the first N fractions
    RUNNING_SYSTEMATIC = "running_systematic"  #: mean of all fractions to date, after the first N


@dataclass(frozen=True, slots=True)
class EarlyWarning:
    """A course whose estimated systematic error on one translation axis is beyond a threshold."""

    patient_id: str
    course_id: str
    kind: WarningKind
    axis: Axis
    value_mm: float  #: the mean shift that was checked, signed as the input
    threshold_mm: float
    n_fractions: int  #: how many fractions the mean is over
    message: str  #: one sentence for the physician
    #: the fraction numbers the mean is over (the NAL check names them in ``message`` when they
    #: are not 1…N, e.g. when fraction 1 has no shift)
    fraction_numbers: tuple[int, ...] = ()


def format_mm(value_mm: float, threshold_mm: float) -> str:
    """``+2.4``-style text, with a second decimal where one decimal would read as the threshold.

    >>> format_mm(2.4, 2.0), format_mm(-2.04, 2.0)
    ('+2.4', '-2.04')
    """
    if math.isclose(abs(round(value_mm, 1)), threshold_mm):
        return f"{value_mm:+.2f}"
    return f"{value_mm:+.1f}"


def _format_threshold(threshold_mm: float) -> str:
    return f"{threshold_mm:.1f}" if round(threshold_mm, 1) == threshold_mm else f"{threshold_mm:g}"


def early_warnings(
    records: Sequence[ShiftRecord],
    as_of: datetime.date,
    nal_fractions: int = DEFAULT_NAL_FRACTIONS,
    nal_threshold_mm: float = DEFAULT_NAL_THRESHOLD_MM,
    running_threshold_mm: float = DEFAULT_RUNNING_THRESHOLD_MM,
) -> list[EarlyWarning]:
    """NAL and running-systematic warnings as of ``as_of`` (see the module docstring).

    Returned sorted by patient, course, kind (``nal`` first) and axis. Raises
    :class:`~registration.errors.InputError` for a non-positive ``nal_fractions``, a negative or
    non-finite threshold, or two shifts for one fraction.
    """
    if isinstance(nal_fractions, bool) or not isinstance(nal_fractions, int) or nal_fractions < 1:
        raise InputError(f"nal_fractions={nal_fractions!r}: give a whole number of fractions ≥ 1.")
    for name, value in (
        ("nal_threshold_mm", nal_threshold_mm),
        ("running_threshold_mm", running_threshold_mm),
    ):
        if not (math.isfinite(value) and value >= 0.0):
            raise InputError(f"{name}={value!r}: give a finite threshold ≥ 0 mm.")
    table = shift_table([r for r in records if r.date <= as_of])
    warnings = _nal_warnings(table, nal_fractions, nal_threshold_mm) + _running_warnings(
        table, as_of, nal_fractions, running_threshold_mm
    )
    kind_order = {kind: i for i, kind in enumerate(WarningKind)}
    axis_order = {axis: i for i, axis in enumerate(TRANSLATION_AXES)}
    return sorted(
        warnings,
        key=lambda w: (w.patient_id, w.course_id, kind_order[w.kind], axis_order[w.axis]),
    )


def _nal_warnings(table: ShiftTable, n_first: int, threshold_mm: float) -> list[EarlyWarning]:
    eligible = np.flatnonzero(table.counts >= n_first)
    rows = table.starts[eligible][:, None] + np.arange(n_first)
    first_mean_mm: FloatArray = table.translations_mm[rows].mean(axis=1)
    used = {
        int(course): tuple(int(n) for n in table.fraction_number[row])
        for course, row in zip(eligible.tolist(), rows, strict=True)
    }
    return [
        _warning(
            table.courses[course],
            WarningKind.NAL,
            axis,
            value_mm,
            threshold_mm,
            n_first,
            _first_fractions_text(used[course]),
            "consider a systematic correction.",
            used[course],
        )
        for course, value_mm, axis in _flagged(eligible, first_mean_mm, threshold_mm)
    ]


def _first_fractions_text(numbers: tuple[int, ...]) -> str:
    """``mean of first 3 fractions``, naming them when they are not 1…N.

    >>> _first_fractions_text((2, 3, 4))
    'mean of the first 3 fractions with a shift (fractions 2, 3, 4; none for fraction 1)'
    """
    n = len(numbers)
    if numbers == tuple(range(1, n + 1)):
        return f"mean of first {n} fractions"
    missing = sorted(set(range(1, max(numbers))) - set(numbers))
    listed = ", ".join(str(k) for k in numbers)
    gap = ""
    if missing:
        shown = ", ".join(str(k) for k in missing[:5]) + (", …" if len(missing) > 5 else "")
        gap = f"; none for fraction{'s' if len(missing) > 1 else ''} {shown}"
    return f"mean of the first {n} fractions with a shift (fractions {listed}{gap})"


def _running_warnings(
    table: ShiftTable, as_of: datetime.date, n_first: int, threshold_mm: float
) -> list[EarlyWarning]:
    eligible = np.flatnonzero(table.counts > n_first)
    running_mean_mm: FloatArray = course_errors(table).mean[eligible, : len(TRANSLATION_AXES)]
    return [
        _warning(
            table.courses[course],
            WarningKind.RUNNING_SYSTEMATIC,
            axis,
            value_mm,
            threshold_mm,
            int(table.counts[course]),
            f"mean of all {int(table.counts[course])} fractions to {as_of.isoformat()}",
            "the systematic error persists; review the set-up and consider a correction.",
            tuple(
                int(n)
                for n in table.fraction_number[
                    table.starts[course] : table.starts[course] + table.counts[course]
                ]
            ),
        )
        for course, value_mm, axis in _flagged(eligible, running_mean_mm, threshold_mm)
    ]


def _warning(
    course: tuple[str, str],
    kind: WarningKind,
    axis: Axis,
    value_mm: float,
    threshold_mm: float,
    n_fractions: int,
    what: str,
    advice: str,
    fraction_numbers: tuple[int, ...] = (),
) -> EarlyWarning:
    patient_id, course_id = course
    message = (
        f"Patient {patient_id} (course {course_id}): {what} is "
        f"{format_mm(value_mm, threshold_mm)} mm {axis} "
        f"(beyond ±{_format_threshold(threshold_mm)} mm): {advice}"
    )
    return EarlyWarning(
        patient_id,
        course_id,
        kind,
        axis,
        value_mm,
        threshold_mm,
        n_fractions,
        message,
        fraction_numbers,
    )


def _flagged(
    courses: IntArray, mean_mm: FloatArray, threshold_mm: float
) -> list[tuple[int, float, Axis]]:
    """(course index, mean, axis) per entry of ``mean_mm`` (courses × axes) beyond threshold."""
    row, column = np.nonzero(exceeds(mean_mm, threshold_mm))
    return [
        (int(courses[r]), float(mean_mm[r, c]), TRANSLATION_AXES[c])
        for r, c in zip(row.tolist(), column.tolist(), strict=True)
    ]

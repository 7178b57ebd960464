"""Offline set-up correction protocols, per course: NAL, eNAL and SAL, with what they prescribe.

For courses *without* daily imaging (or to judge what an offline protocol would have done on a
daily-imaged course), each protocol reads the measured set-up corrections of the imaged fractions
(translations, mm, IEC table axes, the sign of a couch correction: pass the registration's
measured 6-DOF correction of each fraction as a :class:`ShiftRecord`) in fraction-number order and
prescribes systematic couch corrections. ``x_i`` is the correction fraction ``i`` would need with
no offline correction; with the offline correction ``c`` in force, imaging sees ``x_i − c``.

* **NAL** (No Action Level; de Boer HCJ, Heijmen BJM, IJROBP 2001;50:1350): image the first
  ``N`` fractions (N = 3 usual), correct by their mean whatever its size, from fraction N+1 on.
* **eNAL** (de Boer HCJ, Heijmen BJM, IJROBP 2007;67:1586): NAL, then a follow-up image every
  ``follow_up_every`` fractions (5: weekly); when a follow-up's ``|x − c|`` exceeds
  ``follow_up_threshold_mm`` on an axis, the correction is re-estimated as the mean of ``x`` over
  every imaged fraction so far. *The decision rule and the 2 mm default are this implementation's
  reading of the protocol, not checked against the paper's text here: review before clinical use.*
* **SAL** (Shrinking Action Level; Bel A, van Herk M, Bartelink H, Lebesque JV, Radiother
  Oncol 1993;29:253): image fractions one by one; after the ``i``-th image since the start or
  the last correction, if the length of the mean of the ``i`` values ``x − c`` exceeds
  ``α/√i`` the mean is corrected and counting restarts; imaging stops when ``i`` reaches
  ``N_max`` without a correction. Bel et al. compared the 2D length of portal-image
  displacements; here the 3D translation length is compared.

Every outcome also gives ``residual_mean``: the mean over all the course's fractions of
``x_i − c_i`` (``c_i`` the correction in force at fraction ``i``), i.e. the systematic error the
protocol would have left.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum, unique
from typing import Final

import numpy as np

from registration.errors import InputError
from registration.stats_records import FloatArray, ShiftRecord, shift_table

DEFAULT_NAL_FRACTIONS: Final = 3
DEFAULT_FOLLOW_UP_EVERY: Final = 5
DEFAULT_FOLLOW_UP_THRESHOLD_MM: Final = 2.0


@unique
class OfflineProtocol(StrEnum):
    NAL = "nal"
    ENAL = "enal"
    SAL = "sal"


@dataclass(frozen=True, slots=True)
class ProtocolCorrection:
    """One prescribed couch correction step (mm, IEC table axes), applied after a fraction."""

    after_fraction: int  #: measured at this fraction number, applied from the next one
    based_on_fractions: tuple[int, ...]  #: the fraction numbers whose images it is computed from
    lateral_mm: float  #: this step (added to the corrections in force before it)
    longitudinal_mm: float
    vertical_mm: float
    reason: str


@dataclass(frozen=True, slots=True)
class ProtocolOutcome:
    """What one protocol does for one course."""

    patient_id: str
    course_id: str
    protocol: OfflineProtocol
    imaged_fractions: tuple[int, ...]
    corrections: tuple[ProtocolCorrection, ...]
    total_mm: tuple[float, float, float]  #: the correction in force after the last fraction
    residual_mean_mm: tuple[float, float, float]  #: mean of x_i − c_i over all fractions
    message: str


def offline_protocols(
    records: Sequence[ShiftRecord],
    *,
    nal_fractions: int = DEFAULT_NAL_FRACTIONS,
    follow_up_every: int = DEFAULT_FOLLOW_UP_EVERY,
    follow_up_threshold_mm: float = DEFAULT_FOLLOW_UP_THRESHOLD_MM,
    sal_alpha_mm: float | None = None,
    sal_n_max: int | None = None,
) -> tuple[ProtocolOutcome, ...]:
    """NAL and eNAL for every course; SAL too when ``sal_alpha_mm`` and ``sal_n_max`` are given.

    Sorted by patient, course, then protocol (NAL, eNAL, SAL). Raises :class:`InputError` for a
    count below 1, a non-positive or non-finite threshold or α, or two records for one fraction.
    """
    for name, count in (("nal_fractions", nal_fractions), ("follow_up_every", follow_up_every)):
        _check_count(name, count)
    _check_positive("follow_up_threshold_mm", follow_up_threshold_mm)
    if (sal_alpha_mm is None) != (sal_n_max is None):
        raise InputError("SAL needs both sal_alpha_mm and sal_n_max (or neither).")
    if sal_alpha_mm is not None and sal_n_max is not None:
        _check_positive("sal_alpha_mm", sal_alpha_mm)
        _check_count("sal_n_max", sal_n_max)
    table = shift_table(records)
    outcomes: list[ProtocolOutcome] = []
    for g, (patient_id, course_id) in enumerate(table.courses):
        rows = slice(int(table.starts[g]), int(table.starts[g] + table.counts[g]))
        x = table.translations_mm[rows]
        numbers = tuple(int(n) for n in table.fraction_number[rows])
        course = (patient_id, course_id)
        outcomes.append(_nal(course, x, numbers, nal_fractions))
        outcomes.append(
            _enal(course, x, numbers, nal_fractions, follow_up_every, follow_up_threshold_mm)
        )
        if sal_alpha_mm is not None and sal_n_max is not None:
            outcomes.append(_sal(course, x, numbers, sal_alpha_mm, sal_n_max))
    return tuple(outcomes)


def _nal(
    course: tuple[str, str], x: FloatArray, numbers: tuple[int, ...], n_first: int
) -> ProtocolOutcome:
    in_force = np.zeros_like(x)
    if len(numbers) < n_first:
        return _outcome(
            course,
            OfflineProtocol.NAL,
            numbers,
            [],
            in_force,
            x,
            f"NAL needs {n_first} imaged fractions; {len(numbers)} so far: no correction yet.",
        )
    step = x[:n_first].mean(axis=0)
    in_force[n_first:] = step
    used = numbers[:n_first]
    correction = _step(used[-1], used, step, f"mean of fractions {_list(used)}")
    return _outcome(
        course,
        OfflineProtocol.NAL,
        used,
        [correction],
        in_force,
        x,
        f"NAL: correct by the mean of fractions {_list(used)} from fraction "
        f"{_next(numbers, n_first)} on.",
    )


def _enal(
    course: tuple[str, str],
    x: FloatArray,
    numbers: tuple[int, ...],
    n_first: int,
    every: int,
    threshold_mm: float,
) -> ProtocolOutcome:
    nal = _nal(course, x, numbers, n_first)
    if not nal.corrections:
        return _outcome(
            course,
            OfflineProtocol.ENAL,
            nal.imaged_fractions,
            [],
            np.zeros_like(x),
            x,
            nal.message.replace("NAL", "eNAL", 1),
        )
    imaged = list(range(n_first))
    c = x[:n_first].mean(axis=0)
    in_force = np.zeros_like(x)
    steps = list(nal.corrections)
    for i in range(n_first, len(numbers)):
        in_force[i] = c
        if (i - (n_first - 1)) % every:
            continue
        imaged.append(i)
        if np.any(np.round(np.abs(x[i] - c), 6) > threshold_mm):
            new_c = x[imaged].mean(axis=0)
            used = tuple(numbers[k] for k in imaged)
            steps.append(
                _step(
                    numbers[i],
                    used,
                    new_c - c,
                    f"follow-up beyond {threshold_mm:g} mm: mean of fractions {_list(used)}",
                )
            )
            c = new_c
    message = (
        f"eNAL: NAL on fractions {_list(numbers[:n_first])}, follow-up every {every} fractions; "
        f"{len(steps) - 1} update(s)."
    )
    return _outcome(
        course,
        OfflineProtocol.ENAL,
        tuple(numbers[k] for k in imaged),
        steps,
        in_force,
        x,
        message,
    )


def _sal(
    course: tuple[str, str], x: FloatArray, numbers: tuple[int, ...], alpha_mm: float, n_max: int
) -> ProtocolOutcome:
    c = np.zeros(3)
    in_force = np.zeros_like(x)
    block: list[int] = []
    steps: list[ProtocolCorrection] = []
    imaged: list[int] = []
    measuring = True
    for i in range(len(numbers)):
        in_force[i] = c
        if not measuring:
            continue
        imaged.append(i)
        block.append(i)
        mean = (x[block] - c).mean(axis=0)
        level_mm = alpha_mm / math.sqrt(len(block))
        if round(float(np.linalg.norm(mean)), 6) > level_mm:
            used = tuple(numbers[k] for k in block)
            steps.append(
                _step(
                    numbers[i],
                    used,
                    mean,
                    f"|mean| {float(np.linalg.norm(mean)):.2f} mm > α/√{len(block)} = "
                    f"{level_mm:.2f} mm over fractions {_list(used)}",
                )
            )
            c = c + mean
            block = []
        elif len(block) >= n_max:
            measuring = False
    message = (
        f"SAL (α = {alpha_mm:g} mm, N_max = {n_max}): {len(steps)} correction(s); imaging "
        + ("stopped." if not measuring else "continues.")
    )
    return _outcome(
        course, OfflineProtocol.SAL, tuple(numbers[k] for k in imaged), steps, in_force, x, message
    )


def _outcome(
    course: tuple[str, str],
    protocol: OfflineProtocol,
    imaged: tuple[int, ...],
    steps: list[ProtocolCorrection],
    in_force: FloatArray,
    x: FloatArray,
    message: str,
) -> ProtocolOutcome:
    total = np.zeros(3)
    for s in steps:
        total = total + np.array([s.lateral_mm, s.longitudinal_mm, s.vertical_mm])
    residual = (x - in_force).mean(axis=0) if len(x) else np.zeros(3)
    return ProtocolOutcome(
        patient_id=course[0],
        course_id=course[1],
        protocol=protocol,
        imaged_fractions=imaged,
        corrections=tuple(steps),
        total_mm=_triple(total),
        residual_mean_mm=_triple(residual),
        message=f"Patient {course[0]} (course {course[1]}): {message}",
    )


def _step(
    after: int, used: tuple[int, ...], value_mm: FloatArray, reason: str
) -> ProtocolCorrection:
    lat, long, vert = _triple(value_mm)
    return ProtocolCorrection(after, used, lat, long, vert, reason)


def _triple(values: FloatArray) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return a, b, c


def _list(numbers: Sequence[int]) -> str:
    return ", ".join(str(n) for n in numbers)


def _next(numbers: tuple[int, ...], n_first: int) -> str:
    return str(numbers[n_first]) if len(numbers) > n_first else f"{numbers[n_first - 1]} + 1"


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name}={value!r}: give a whole number ≥ 1.")


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0.0):
        raise InputError(f"{name}={value!r}: give a finite number of mm > 0.")

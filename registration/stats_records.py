"""The input of the set-up error statistics: one couch shift per fraction, as plain frozen data.

This module is the implementation behind :mod:`registration.stats` (import from there). It holds
the record type, the axis names, the threshold comparisons used everywhere, and
:func:`shift_table`, which turns records into sorted numpy arrays grouped by treatment course.

Conventions
-----------
* Translations in millimetres, rotations in degrees, in IEC 61217 table axes (lateral X,
  longitudinal Y, vertical Z; roll about Y), in whatever sign the caller's :class:`ShiftSource`
  carries (a couch correction is the negative of the anatomy's displacement, see
  :mod:`registration.couch`). The statistics never change a sign: Σ, σ and every ``|x|`` count
  are sign-free, the population mean M is in the sign of the input.
* **The statistical unit is a treatment course** (``patient_id``, ``course_id``): a systematic
  error belongs to one planning CT, so a patient treated twice contributes two independent
  "patients" to the population, as in van Herk's and Stroom's analyses. Within a course the
  fractions are ordered by ``fraction_number`` (never by the order the records arrive in).
* **Comparisons with a threshold** are made on values rounded to 1e-6 mm (a nanometre-scale
  guard, far below any clinical resolution) so that binary floating point cannot move a shift
  across a line: ``0.3 cm × 10`` is ``3.0000000000000004`` and must not count as "beyond 3 mm".
  "Beyond" means strictly greater (``|x| > t``); "at least" means ``|x| ≥ t``.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum, unique
from typing import Final

import numpy as np
import numpy.typing as npt

from registration.errors import InputError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: decimals (of mm or deg) kept before any threshold comparison; see the module docstring
COMPARISON_DECIMALS: Final = 6


@unique
class ShiftSource(StrEnum):
    """Which shift of a fraction the caller feeds to the statistics (the statistics do not care).

    The choice changes the meaning of the answer: corrections measure the set-up error before
    image guidance (what the PTV margin must cover without daily imaging); residuals measure what
    is left after the couch moved (what the margin must cover *with* daily imaging).
    """

    REGISTRATION = "registration"  #: the correction the registration proposed, as computed
    SIGNED = "signed"  #: the correction the physician signed and the couch applied
    RESIDUAL = "residual"  #: the residual error measured after the correction


DEFAULT_SHIFT_SOURCE: Final = ShiftSource.SIGNED


@unique
class Axis(StrEnum):
    """The axes the statistics are reported on (IEC 61217 table axes; roll about Y).

    Pitch and yaw are carried on :class:`ShiftRecord` but not summarised: TomoTherapy reports
    but cannot correct them.
    """

    LATERAL = "lateral"  #: X, mm
    LONGITUDINAL = "longitudinal"  #: Y, mm
    VERTICAL = "vertical"  #: Z, mm
    ROLL = "roll"  #: rotation about Y, degrees


#: the column order of :attr:`ShiftTable.values`
AXES: Final = (Axis.LATERAL, Axis.LONGITUDINAL, Axis.VERTICAL, Axis.ROLL)
TRANSLATION_AXES: Final = (Axis.LATERAL, Axis.LONGITUDINAL, Axis.VERTICAL)


_SHIFT_FIELDS: Final = (
    "lateral_mm",
    "longitudinal_mm",
    "vertical_mm",
    "roll_deg",
    "pitch_deg",
    "yaw_deg",
)


@dataclass(frozen=True, slots=True)
class ShiftRecord:
    """One fraction's shift for one treatment course (mm and degrees, IEC table axes).

    Raises :class:`~registration.errors.InputError` when a value is not a finite number.
    """

    patient_id: str
    course_id: str
    fraction_number: int
    date: datetime.date
    lateral_mm: float
    longitudinal_mm: float
    vertical_mm: float
    roll_deg: float
    pitch_deg: float = 0.0
    yaw_deg: float = 0.0

    def __post_init__(self) -> None:
        for name in _SHIFT_FIELDS:
            value = getattr(self, name)
            if not math.isfinite(value):
                raise InputError(
                    f"{name}={value!r} for patient {self.patient_id!r}, course "
                    f"{self.course_id!r}, fraction {self.fraction_number}: a shift must be a "
                    "finite number; leave the fraction out if it has no shift."
                )

    def vector_length_mm(self) -> float:
        """Length of the translation, ``sqrt(lateral² + longitudinal² + vertical²)``, in mm."""
        return math.hypot(self.lateral_mm, self.longitudinal_mm, self.vertical_mm)


def exceeds(values: FloatArray, threshold: float) -> BoolArray:
    """``|values| > threshold`` (strictly beyond), on values rounded to 1e-6."""
    return np.asarray(np.round(np.abs(values), COMPARISON_DECIMALS) > threshold)


def at_least(values: FloatArray, threshold: float) -> BoolArray:
    """``|values| ≥ threshold``, on values rounded to 1e-6."""
    return np.asarray(np.round(np.abs(values), COMPARISON_DECIMALS) >= threshold)


@dataclass(frozen=True, slots=True)
class ShiftTable:
    """Records as arrays, sorted by course then fraction number (internal to the statistics).

    ``values[:, j]`` is axis ``AXES[j]``; the rows of course ``g`` are
    ``starts[g] : starts[g] + counts[g]``. Courses are sorted by (patient_id, course_id).
    """

    courses: tuple[tuple[str, str], ...]
    course_index: IntArray  #: per row, index into ``courses``
    fraction_number: IntArray
    date_ordinal: IntArray  #: ``date.toordinal()``
    values: FloatArray  #: shape (rows, 4): lateral, longitudinal, vertical mm; roll deg
    counts: IntArray  #: fractions per course
    starts: IntArray  #: first row of each course

    @property
    def translations_mm(self) -> FloatArray:
        return self.values[:, :3]


#: the column order of :attr:`ShiftTable.values` with ``all_rotations=True``: AXES, pitch, yaw
SIX_COLUMNS: Final = (*_SHIFT_FIELDS[:4], "pitch_deg", "yaw_deg")


def shift_table(records: Sequence[ShiftRecord], *, all_rotations: bool = False) -> ShiftTable:
    """Sort and group ``records`` by (patient_id, course_id, fraction_number).

    ``all_rotations``: six value columns (:data:`SIX_COLUMNS`: the four of :data:`AXES`, then
    pitch and yaw in degrees) instead of four.

    Raises :class:`~registration.errors.InputError` when a course has two records for the same
    fraction number: the caller must choose one shift per fraction (see :class:`ShiftSource`).
    """
    courses = tuple(sorted({(r.patient_id, r.course_id) for r in records}))
    position = {course: i for i, course in enumerate(courses)}
    course_index = np.fromiter(
        (position[(r.patient_id, r.course_id)] for r in records), np.int64, len(records)
    )
    fraction = np.fromiter((r.fraction_number for r in records), np.int64, len(records))
    ordinal = np.fromiter((r.date.toordinal() for r in records), np.int64, len(records))
    columns = SIX_COLUMNS if all_rotations else _SHIFT_FIELDS[:4]
    values = np.array(
        [tuple(getattr(r, name) for name in columns) for r in records], dtype=np.float64
    ).reshape(len(records), len(columns))
    order = np.lexsort((fraction, course_index))
    course_index, fraction, ordinal = course_index[order], fraction[order], ordinal[order]
    repeated = (np.diff(course_index) == 0) & (np.diff(fraction) == 0)
    if np.any(repeated):
        patient_id, course_id = courses[int(course_index[np.argmax(repeated)])]
        raise InputError(
            f"patient {patient_id!r}, course {course_id!r} has more than one shift for fraction "
            f"{int(fraction[np.argmax(repeated)])}: pass one shift per fraction (choose the "
            "registration, signed or residual shift before calling the statistics)."
        )
    counts = np.bincount(course_index, minlength=len(courses)).astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    return ShiftTable(
        courses=courses,
        course_index=course_index,
        fraction_number=fraction,
        date_ordinal=ordinal,
        values=values[order],
        counts=counts,
        starts=starts[: len(courses)],
    )

"""The plain data a report is made of: rows in, a context around them, a :class:`Report` out.

The caller (database query, API route, CLI) builds one :class:`FractionRow` per fraction with the
shift that counts already chosen (see :class:`~registration.stats.ShiftSource`), a
:class:`ReportContext` saying what the report covers, and passes both to
:func:`app.services.reports.build_report`. Nothing here reads a database, a clock or a file.

Units: translations in mm, rotations in degrees, IEC 61217 table axes, signs as stored.
Times: timezone-aware datetimes, shown in UTC.
"""

from __future__ import annotations

import datetime
import math
import re
from dataclasses import dataclass, field
from typing import Final

from app.services.reports.errors import ReportInputError
from app.services.reports.residuals import ResidualSummary, StructureResidualRow
from registration.stats import (
    DEFAULT_MARGIN_IN_USE_MM,
    DEFAULT_SHIFT_SOURCE,
    ShiftSource,
    ShiftStatistics,
)
from registration.stats_offline import ProtocolOutcome
from registration.stats_parts import FractionShifts, ThreePartStatistics

#: the values :attr:`FractionRow.decision` may take; ``None`` means awaiting a decision
DECISIONS: Final = ("approved", "approved_adjusted", "rejected")
#: how a missing decision is written in the exports
AWAITING: Final = "awaiting"
#: the decision whose fraction never counts in the statistics
REJECTED: Final = "rejected"

_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)
_ISO_WEEK: Final = re.compile(r"(\d{4})-W(\d{2})")


def _require_aware(name: str, value: datetime.datetime, where: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ReportInputError(
            f"{name}={value.isoformat()} {where} has no time zone: pass an aware datetime "
            "(UTC, e.g. datetime.now(timezone.utc))."
        )


@dataclass(frozen=True, slots=True)
class FractionRow:
    """One fraction of one treatment course, with the shift that counts for the report.

    ``decision`` is one of :data:`DECISIONS` or ``None`` (awaiting). ``acquired_at`` and
    ``signed_at`` must be timezone-aware. Raises :class:`ReportInputError` otherwise.

    A shift value is ``None`` where the chosen shift source has none for this fraction (under
    ``signed``: a fraction awaiting its sign-off, or a rejected one). Such a row is listed in
    the exports but left out of the statistics, as is every ``rejected`` row (its shift was not
    applied): see :attr:`counts_in_statistics`. The caller marks ``repeat_image`` a second
    image of a fraction number (a repeat or verification MVCT) when an earlier one counts.
    """

    patient_id: str
    course_id: str
    site: str | None
    fraction_number: int
    fraction_date: datetime.date
    acquired_at: datetime.datetime
    lateral_mm: float | None
    longitudinal_mm: float | None
    vertical_mm: float | None
    pitch_deg: float | None
    roll_deg: float | None
    yaw_deg: float | None
    trusted: bool
    decision: str | None
    signed_by: str | None
    signed_at: datetime.datetime | None
    #: a later image of a fraction number whose earlier image already counts (listed only)
    repeat_image: bool = False
    #: everything the fraction gives the three-part statistics (measured, proposed, signed,
    #: the machine's residual, the verification scan); None: not known (e.g. hand-made rows)
    shifts: FractionShifts | None = None
    #: per structure, what was left after the couch's correction (empty without a result's)
    residuals: tuple[StructureResidualRow, ...] = ()

    def __post_init__(self) -> None:
        where = f"(patient {self.patient_id!r}, fraction {self.fraction_number})"
        _require_aware("acquired_at", self.acquired_at, where)
        if self.signed_at is not None:
            _require_aware("signed_at", self.signed_at, where)
        if self.decision is not None and self.decision not in DECISIONS:
            raise ReportInputError(
                f"decision={self.decision!r} {where}: give one of {', '.join(DECISIONS)}, "
                "or None while the fraction awaits a decision."
            )

    @property
    def has_shift(self) -> bool:
        """All six values are present."""
        return None not in (
            self.lateral_mm,
            self.longitudinal_mm,
            self.vertical_mm,
            self.pitch_deg,
            self.roll_deg,
            self.yaw_deg,
        )

    @property
    def counts_in_statistics(self) -> bool:
        """It has a shift, was not rejected (its correction was not applied) and is not a
        :attr:`repeat_image`."""
        return self.has_shift and self.decision != REJECTED and not self.repeat_image


def _day_month_year(day: datetime.date) -> str:
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def human_date_range(start: datetime.date, end: datetime.date) -> str:
    """``23–29 Nov 2026``, ``28 Nov – 4 Dec 2026``, ``28 Dec 2026 – 3 Jan 2027`` (English).

    >>> human_date_range(datetime.date(2026, 11, 23), datetime.date(2026, 11, 29))
    '23–29 Nov 2026'
    """
    if start == end:
        return _day_month_year(start)
    if (start.year, start.month) == (end.year, end.month):
        return f"{start.day}–{_day_month_year(end)}"
    if start.year == end.year:
        return f"{start.day} {_MONTHS[start.month - 1]} – {_day_month_year(end)}"
    return f"{_day_month_year(start)} – {_day_month_year(end)}"


@dataclass(frozen=True, slots=True)
class ReportPeriod:
    """The dates a report covers, ``start`` to ``end`` inclusive, and what to call them.

    Build one with :meth:`iso_week`, :meth:`between` or :meth:`since`.

    >>> ReportPeriod.iso_week("2026-W48").description
    '2026-W48 (23–29 Nov 2026)'
    >>> ReportPeriod.since(datetime.date(2026, 9, 1), datetime.date(2026, 11, 29)).description
    'since 2026-09-01 (1 Sep – 29 Nov 2026)'
    """

    start: datetime.date
    end: datetime.date
    label: str  #: "2026-W48", "since 2026-09-01", or the dates themselves

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ReportInputError(
                f"the period ends ({self.end.isoformat()}) before it starts "
                f"({self.start.isoformat()}): give the start date first."
            )

    @classmethod
    def iso_week(cls, week: str) -> ReportPeriod:
        """Monday to Sunday of ISO week ``YYYY-Www`` (e.g. ``2026-W48``)."""
        match = _ISO_WEEK.fullmatch(week.strip())
        try:
            if match is None:
                raise ValueError(week)
            year, number = int(match.group(1)), int(match.group(2))
            monday = datetime.date.fromisocalendar(year, number, 1)
            sunday = monday + datetime.timedelta(days=6)  # OverflowError in 9999-W52
        except (ValueError, OverflowError):
            raise ReportInputError(
                f"week={week!r}: give an ISO week as YYYY-Www, e.g. 2026-W48 (weeks 01–52, "
                "or 53 in a year that has one)."
            ) from None
        return cls(monday, sunday, f"{year}-W{number:02d}")

    @classmethod
    def between(cls, start: datetime.date, end: datetime.date) -> ReportPeriod:
        """Any range of whole days, ``start`` to ``end`` inclusive."""
        if end < start:
            cls(start, end, "")  # raises with the message
        return cls(start, end, human_date_range(start, end))

    @classmethod
    def since(cls, start: datetime.date, until: datetime.date) -> ReportPeriod:
        """A cumulative view from ``start`` up to and including ``until`` (usually today)."""
        return cls(start, until, f"since {start.isoformat()}")

    @property
    def dates(self) -> str:
        """The dates in words, e.g. ``23–29 Nov 2026``."""
        return human_date_range(self.start, self.end)

    @property
    def description(self) -> str:
        """The label with the dates, e.g. ``2026-W48 (23–29 Nov 2026)``; shown on every page."""
        return self.label if self.label == self.dates else f"{self.label} ({self.dates})"

    @property
    def phrase(self) -> str:
        """The description after a preposition: ``in 2026-W48 (…)`` or ``since 2026-09-01 (…)``."""
        return self.description if self.label.startswith("since ") else f"in {self.description}"

    def contains(self, day: datetime.date) -> bool:
        return self.start <= day <= self.end


@dataclass(frozen=True, slots=True)
class ReportContext:
    """What a report covers and who asked for it (everything but the rows).

    ``site`` is the site filter (``None``: all sites); ``shift_source`` says which shift the rows
    carry; ``generated_at`` must be timezone-aware (it is shown in UTC); ``notes`` are the
    caller's sentences for the reader (e.g. what was selected and why), shown before the
    statistics' own notes.
    """

    period: ReportPeriod
    generated_at: datetime.datetime
    generated_by: str
    title: str = "MVCT set-up errors"
    site: str | None = None
    shift_source: ShiftSource = DEFAULT_SHIFT_SOURCE
    margin_in_use_mm: float = DEFAULT_MARGIN_IN_USE_MM
    notes: tuple[str, ...] = ()
    #: the offline protocols to evaluate (NAL and eNAL always; SAL when both are given)
    sal_alpha_mm: float | None = None
    sal_n_max: int | None = None

    def __post_init__(self) -> None:
        _require_aware("generated_at", self.generated_at, "of the report")
        if not (math.isfinite(self.margin_in_use_mm) and self.margin_in_use_mm > 0.0):
            raise ReportInputError(
                f"margin_in_use_mm={self.margin_in_use_mm!r}: give the PTV margin in mm, > 0."
            )

    @property
    def generated_at_utc(self) -> datetime.datetime:
        return self.generated_at.astimezone(datetime.UTC)


@dataclass(frozen=True, slots=True)
class Report:
    """Rows, their context and their statistics: everything a renderer needs, nothing to compute.

    ``rows`` are sorted by patient, course and fraction number, ``vectors_mm[i]`` is the 3D
    length of ``rows[i]`` (``None`` without a shift), and ``statistics`` is
    :func:`registration.stats.summarise` of the rows that count
    (:attr:`FractionRow.counts_in_statistics`). ``notes`` are the context's notes and what
    :func:`~app.services.reports.build_report` adds (rows listed but not counted, the history
    used for
    the early warnings).
    """

    context: ReportContext
    rows: tuple[FractionRow, ...]
    vectors_mm: tuple[float | None, ...]
    statistics: ShiftStatistics
    notes: tuple[str, ...] = ()
    #: the set-up error before correction, the residual after it (the margin verdict) and the
    #: physician's adjustments; None when no row carries :attr:`FractionRow.shifts`
    parts: ThreePartStatistics | None = None
    #: NAL / eNAL (/ SAL) per listed course, from the measured corrections
    offline: tuple[ProtocolOutcome, ...] = ()
    residuals: ResidualSummary = field(default_factory=ResidualSummary)
    #: part (b) at the PTV: the worst PTV residual max of the couch's applied correction, over
    #: the treated fractions without a verification scan whose course has structures
    part_b_ptv: ResidualSummary = field(default_factory=ResidualSummary)

    @property
    def is_empty(self) -> bool:
        return not self.rows

    @property
    def counted_rows(self) -> tuple[FractionRow, ...]:
        """The rows the statistics (and the figures) are made of."""
        return tuple(row for row in self.rows if row.counts_in_statistics)

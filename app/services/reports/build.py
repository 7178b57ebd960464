"""Rows and context → :class:`~app.services.reports.model.Report`: the one place statistics are
computed.

The renderers (:mod:`app.services.reports.tabular`, :mod:`app.services.reports.xlsx`,
:mod:`app.services.reports.pdf`, :mod:`app.services.reports.html_page`) only format what
:func:`build_report` put in the report.

Which rows count: every row is listed; the statistics and figures use the rows with all six
values that were not rejected (:attr:`FractionRow.counts_in_statistics`), and a note says how
many were left out and why. ``history`` (the same courses' fractions before the period) feeds
the early warnings only, so that a week report still judges each course's *first* fractions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

from app.services.reports.errors import ReportInputError
from app.services.reports.model import AWAITING, REJECTED, FractionRow, Report, ReportContext
from app.services.reports.residuals import summarise_part_b_ptv, summarise_residuals
from registration.errors import InputError
from registration.stats import (
    DEFAULT_BOOTSTRAP_RESAMPLES,
    DEFAULT_BOOTSTRAP_SEED,
    ShiftRecord,
    ShiftSource,
    ShiftStatistics,
    early_warnings,
    summarise,
)
from registration.stats_offline import ProtocolOutcome, offline_protocols
from registration.stats_parts import (
    ResidualSource,
    ThreePartStatistics,
    three_part_statistics,
)


def shift_record(row: FractionRow) -> ShiftRecord:
    """The statistics' view of a row that has a shift (:class:`ReportInputError` if it has none
    or a non-finite one)."""
    values = (
        row.lateral_mm,
        row.longitudinal_mm,
        row.vertical_mm,
        row.roll_deg,
        row.pitch_deg,
        row.yaw_deg,
    )
    try:
        lateral, longitudinal, vertical, roll, pitch, yaw = (
            float("nan") if v is None else v for v in values
        )
        return ShiftRecord(
            patient_id=row.patient_id,
            course_id=row.course_id,
            fraction_number=row.fraction_number,
            date=row.fraction_date,
            lateral_mm=lateral,
            longitudinal_mm=longitudinal,
            vertical_mm=vertical,
            roll_deg=roll,
            pitch_deg=pitch,
            yaw_deg=yaw,
        )
    except InputError as error:
        raise ReportInputError(str(error)) from error


def _vector_mm(row: FractionRow) -> float | None:
    """``sqrt(lateral² + longitudinal² + vertical²)`` in mm, or None without a translation."""
    if row.lateral_mm is None or row.longitudinal_mm is None or row.vertical_mm is None:
        return None
    return math.hypot(row.lateral_mm, row.longitudinal_mm, row.vertical_mm)


def _check_selected(row: FractionRow, context: ReportContext) -> None:
    where = f"patient {row.patient_id!r}, course {row.course_id!r}, fraction {row.fraction_number}"
    if not context.period.contains(row.fraction_date):
        raise ReportInputError(
            f"{where} is dated {row.fraction_date.isoformat()}, outside the report period "
            f"{context.period.description}: select the rows of the period only."
        )
    if context.site is not None and row.site != context.site:
        raise ReportInputError(
            f"{where} has site {row.site!r} but the report is for site {context.site!r}: "
            "select the rows of that site only, or set site=None for all sites."
        )


def _left_out_notes(rows: Sequence[FractionRow], source: ShiftSource) -> list[str]:
    """One sentence per reason a listed row is not in the statistics."""
    awaiting = sum(1 for r in rows if r.decision is None and not r.has_shift)
    rejected = sum(1 for r in rows if r.decision == REJECTED)
    incomplete = sum(1 for r in rows if r.decision not in (None, REJECTED) and not r.has_shift)
    repeats = sum(1 for r in rows if r.repeat_image and r.has_shift and r.decision != REJECTED)
    notes = []
    if awaiting:
        notes.append(
            f"{awaiting} fraction(s) {AWAITING} a sign-off are listed but not counted in the "
            f"statistics: they have no {source.value} shift yet."
        )
    if rejected:
        notes.append(
            f"{rejected} rejected fraction(s) are listed but not counted in the statistics: "
            "their correction was not applied."
        )
    if incomplete:
        notes.append(
            f"{incomplete} fraction(s) without a complete {source.value} shift are listed but "
            "not counted in the statistics."
        )
    if repeats:
        notes.append(
            f"{repeats} repeat image(s) of a fraction number that already counts are listed but "
            "not counted: the first image of each fraction with a shift counts."
        )
    return notes


def _with_history_warnings(
    statistics: ShiftStatistics,
    rows: Sequence[FractionRow],
    history: Sequence[FractionRow],
    context: ReportContext,
) -> ShiftStatistics:
    """The statistics with early warnings over ``history`` + ``rows``, for the listed courses."""
    listed = {(r.patient_id, r.course_id) for r in rows}
    records = [shift_record(r) for r in (*history, *rows) if r.counts_in_statistics]
    try:
        warnings = early_warnings(records, context.period.end)
    except InputError as error:
        raise ReportInputError(str(error)) from error
    kept = tuple(w for w in warnings if (w.patient_id, w.course_id) in listed)
    return dataclasses.replace(statistics, warnings=kept)


def _check_history(row: FractionRow, context: ReportContext) -> None:
    if row.fraction_date >= context.period.start:
        raise ReportInputError(
            f"history row of patient {row.patient_id!r}, course {row.course_id!r}, fraction "
            f"{row.fraction_number} is dated {row.fraction_date.isoformat()}, not before the "
            f"period {context.period.description}: pass the period's rows as rows."
        )


def build_report(
    rows: Iterable[FractionRow],
    context: ReportContext,
    *,
    history: Iterable[FractionRow] = (),
    bootstrap_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> Report:
    """Summarise ``rows`` (one per fraction, already selected) for ``context``.

    The rows must lie in ``context.period`` and match ``context.site`` (when it is set): the
    caller selects, this function checks and raises :class:`ReportInputError` naming the first
    row that does not. Two rows for one fraction of a course raise as well. The statistics are
    :func:`registration.stats.summarise` of the rows that count
    (:attr:`FractionRow.counts_in_statistics`; a note says how many are listed only) with
    ``context.margin_in_use_mm``, the early warnings evaluated as of the period's last day, and
    a fixed bootstrap ``seed`` so that the same rows always give the same report. No rows give a
    valid, empty report.

    ``history``: earlier fractions (dated before the period) of the courses in ``rows``. They
    count in the early warnings only — a course's first fractions may precede a one-week
    report — never in the statistics or the listing. Warnings are kept for listed courses only.
    """
    ordered = sorted(rows, key=lambda r: (r.patient_id, r.course_id, r.fraction_number))
    for row in ordered:
        _check_selected(row, context)
    earlier = list(history)
    for row in earlier:
        _check_history(row, context)
    records = [shift_record(row) for row in ordered if row.counts_in_statistics]
    try:
        statistics = summarise(
            records,
            context.margin_in_use_mm,
            bootstrap_resamples,
            seed,
            as_of=context.period.end,
        )
    except InputError as error:
        raise ReportInputError(str(error)) from error
    notes = [*context.notes, *_left_out_notes(ordered, context.shift_source)]
    if earlier:
        statistics = _with_history_warnings(statistics, ordered, earlier, context)
        n_used = sum(1 for r in earlier if r.counts_in_statistics)
        notes.append(
            f"The early warnings also read {n_used} earlier fraction(s) of these courses, "
            f"before {context.period.start.isoformat()}, so that each course's first fractions "
            "are judged; the statistics use the period's fractions only."
        )
    parts, offline, part_notes = _parts_and_offline(ordered, earlier, context)
    return Report(
        context=context,
        rows=tuple(ordered),
        vectors_mm=tuple(_vector_mm(row) for row in ordered),
        statistics=statistics,
        notes=tuple([*notes, *part_notes]),
        parts=parts,
        offline=offline,
        residuals=summarise_residuals(
            [(r.patient_id, r.residuals) for r in ordered if r.counts_in_statistics]
        ),
        part_b_ptv=summarise_part_b_ptv(
            [(r.patient_id, r.residuals) for r in ordered if _residual_from_machine(r)]
        ),
    )


def _residual_from_machine(row: FractionRow) -> bool:
    """The row is in part (b) with what the machine could not correct (no verification scan)."""
    if not _applied(row) or row.shifts is None:
        return False
    residual = row.shifts.residual()
    return residual is not None and residual[1] is ResidualSource.MACHINE


def _applied(row: FractionRow) -> bool:
    """The row's fraction was treated with a correction once (not rejected, not a repeat)."""
    return row.shifts is not None and row.decision != REJECTED and not row.repeat_image


def _parts_and_offline(
    rows: Sequence[FractionRow], history: Sequence[FractionRow], context: ReportContext
) -> tuple[ThreePartStatistics | None, tuple[ProtocolOutcome, ...], list[str]]:
    """The three parts over the period's rows; the offline protocols over each listed course's
    measured corrections (history included, so NAL sees the course's first fractions)."""
    inputs = [row.shifts for row in rows if _applied(row) and row.shifts is not None]
    if not any(row.shifts is not None for row in rows):
        return None, (), []
    listed = {(r.patient_id, r.course_id) for r in rows}
    course_inputs = [
        row.shifts
        for row in (*history, *rows)
        if _applied(row) and row.shifts is not None and (row.patient_id, row.course_id) in listed
    ]
    try:
        parts = three_part_statistics(inputs, context.margin_in_use_mm)
        offline = offline_protocols(
            [s.record(s.measured) for s in course_inputs],
            sal_alpha_mm=context.sal_alpha_mm,
            sal_n_max=context.sal_n_max,
        )
    except InputError as error:
        raise ReportInputError(str(error)) from error
    notes = [
        "The three-part statistics use the measured 6-DOF correction of every treated "
        "fraction, whatever the shift source: (a) before correction, (b) residual after it, "
        "(c) the physician's adjustments. The margin verdict of a daily-imaging course is "
        "part (b)'s, with Σ corrected for small samples; the population table above judges "
        f"the {context.shift_source.value} shifts with the plain Σ."
    ]
    return parts, offline, notes

"""Rows and context → :class:`~app.reports.model.Report`: the one place statistics are computed.

The renderers (:mod:`app.reports.tabular`, :mod:`app.reports.pdf`, :mod:`app.reports.html_page`)
only format what :func:`build_report` put in the report.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.reports.errors import ReportInputError
from app.reports.model import FractionRow, Report, ReportContext
from registration.errors import InputError
from registration.stats import (
    DEFAULT_BOOTSTRAP_RESAMPLES,
    DEFAULT_BOOTSTRAP_SEED,
    ShiftRecord,
    summarise,
)


def shift_record(row: FractionRow) -> ShiftRecord:
    """The statistics' view of a row (raises :class:`ReportInputError` for a non-finite shift)."""
    try:
        return ShiftRecord(
            patient_id=row.patient_id,
            course_id=row.course_id,
            fraction_number=row.fraction_number,
            date=row.fraction_date,
            lateral_mm=row.lateral_mm,
            longitudinal_mm=row.longitudinal_mm,
            vertical_mm=row.vertical_mm,
            roll_deg=row.roll_deg,
            pitch_deg=row.pitch_deg,
            yaw_deg=row.yaw_deg,
        )
    except InputError as error:
        raise ReportInputError(str(error)) from error


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


def build_report(
    rows: Iterable[FractionRow],
    context: ReportContext,
    *,
    bootstrap_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> Report:
    """Summarise ``rows`` (one per fraction, already selected) for ``context``.

    The rows must lie in ``context.period`` and match ``context.site`` (when it is set): the
    caller selects, this function checks and raises :class:`ReportInputError` naming the first
    row that does not. Two rows for one fraction of a course raise as well. The statistics are
    :func:`registration.stats.summarise` with ``context.margin_in_use_mm``, the early warnings
    evaluated as of the period's last day, and a fixed bootstrap ``seed`` so that the same rows
    always give the same report. No rows give a valid, empty report.
    """
    ordered = sorted(rows, key=lambda r: (r.patient_id, r.course_id, r.fraction_number))
    for row in ordered:
        _check_selected(row, context)
    records = [shift_record(row) for row in ordered]
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
    return Report(
        context=context,
        rows=tuple(ordered),
        vectors_mm=tuple(record.vector_length_mm() for record in records),
        statistics=statistics,
    )

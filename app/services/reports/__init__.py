"""Weekly and cumulative set-up error reports: plain data in, CSV / XLSX / HTML / PDF out.

No database, no HTTP, no clock and no files: the caller selects the rows and says what they are.

    >>> import datetime
    >>> from app.services.reports import ReportContext, ReportPeriod, build_report, to_csv
    >>> context = ReportContext(
    ...     period=ReportPeriod.iso_week("2026-W48"),
    ...     generated_at=datetime.datetime(2026, 11, 30, 7, 0, tzinfo=datetime.UTC),
    ...     generated_by="A. Physicist",
    ... )
    >>> report = build_report([], context)
    >>> to_csv(report).decode().splitlines()[0].split(",")[:5]
    ['patient_id', 'course_id', 'site', 'fraction_number', 'date']

1. One :class:`FractionRow` per fraction of the period (and site), carrying the shift the
   context's ``shift_source`` names (registration, signed or residual).
2. :func:`build_report` checks the rows against the context and computes the statistics once
   (:func:`registration.stats.summarise`, fixed bootstrap seed).
3. :func:`to_csv`, :func:`to_xlsx`, :func:`to_pdf` return ``bytes``; :func:`to_html` returns
   ``str``. They only format: none recomputes a statistic, none raises for an empty report.
   ``to_pdf`` and ``to_html`` draw the figures; draw them once with :func:`render_figures` and
   pass ``figures=`` to both when serving both.

Media types: CSV ``text/csv; charset=utf-8``, XLSX
``application/vnd.openxmlformats-officedocument.spreadsheetml.sheet``, PDF ``application/pdf``,
HTML ``text/html; charset=utf-8`` (see :data:`MEDIA_TYPES` and :data:`FILE_EXTENSIONS`).
Errors: :class:`ReportInputError` (a ``ValueError``) for unusable rows or context.
"""

from __future__ import annotations

from typing import Final

from app.services.reports.build import build_report
from app.services.reports.errors import ReportError, ReportInputError
from app.services.reports.html_page import to_html
from app.services.reports.model import (
    AWAITING,
    DECISIONS,
    FractionRow,
    Report,
    ReportContext,
    ReportPeriod,
)
from app.services.reports.pdf import to_pdf
from app.services.reports.plots import DEFAULT_MAX_PATIENTS_PLOTTED, ReportFigures, render_figures
from app.services.reports.tabular import CSV_COLUMNS, to_csv
from app.services.reports.xlsx import to_xlsx

__all__ = [
    "AWAITING",
    "CSV_COLUMNS",
    "DECISIONS",
    "DEFAULT_MAX_PATIENTS_PLOTTED",
    "FILE_EXTENSIONS",
    "MEDIA_TYPES",
    "FractionRow",
    "Report",
    "ReportContext",
    "ReportError",
    "ReportFigures",
    "ReportInputError",
    "ReportPeriod",
    "build_report",
    "render_figures",
    "to_csv",
    "to_html",
    "to_pdf",
    "to_xlsx",
]

MEDIA_TYPES: Final = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
    "html": "text/html; charset=utf-8",
}
FILE_EXTENSIONS: Final = {"csv": ".csv", "xlsx": ".xlsx", "pdf": ".pdf", "html": ".html"}

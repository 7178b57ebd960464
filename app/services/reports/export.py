"""Around a report: the period parameters, the formats, the file names and the JSON form.

Shared by the API route (:mod:`app.api.reports`) and the CLI (:mod:`app.cli.report`); the
database side is :mod:`app.services.reports.query`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from dataclasses import dataclass
from typing import Any, Final

from app.services.reports import (
    AWAITING,
    FILE_EXTENSIONS,
    Report,
    ReportFigures,
    ReportInputError,
    ReportPeriod,
    to_csv,
    to_html,
    to_pdf,
    to_xlsx,
)
from app.services.reports.present_parts import part_columns

#: every format a report can be exported in; ``json`` is the statistics and rows as data
FORMATS: Final = ("json", "csv", "xlsx", "pdf", "html")
JSON_MEDIA_TYPE: Final = "application/json"
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_UNSAFE_IN_FILE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class ParameterNames:
    """How the period's parameters are spelled in messages: ``week=2026-W48`` or ``--week …``."""

    week: str = "week"
    start: str = "from"
    end: str = "to"
    since: str = "since"
    separator: str = "="

    def given(self, name: str, value: str) -> str:
        return f"{name}{self.separator}{value}"


API_NAMES: Final = ParameterNames()


def parse_date(name: str, text: str, names: ParameterNames = API_NAMES) -> datetime.date:
    """``YYYY-MM-DD`` → date, or :class:`ReportInputError` naming the parameter ``name``."""
    try:
        if not _DATE.fullmatch(text.strip()):
            raise ValueError(text)
        return datetime.date.fromisoformat(text.strip())
    except ValueError:
        raise ReportInputError(
            f"{names.given(name, text)}: give a date as YYYY-MM-DD, e.g. 2026-11-23."
        ) from None


def parse_period(
    *,
    week: str | None,
    start: str | None,
    end: str | None,
    since: str | None,
    today: datetime.date,
    names: ParameterNames = API_NAMES,
) -> ReportPeriod:
    """Exactly one of: ``week``; ``start`` and ``end`` (from/to); ``since`` (up to ``today``).

    Raises :class:`ReportInputError`; ``names`` spells the parameters in its messages.
    """
    n = names
    forms = (
        f"{n.given(n.week, 'YYYY-Www')} (e.g. 2026-W48), {n.given(n.start, 'YYYY-MM-DD')} with "
        f"{n.given(n.end, 'YYYY-MM-DD')}, or {n.given(n.since, 'YYYY-MM-DD')}"
    )
    given = [
        name
        for name, value in ((n.week, week), (f"{n.start}/{n.end}", start or end), (n.since, since))
        if value
    ]
    if not given:
        raise ReportInputError(f"say which period: {forms}.")
    if len(given) > 1:
        raise ReportInputError(f"give one period, not {' and '.join(given)}: {forms}.")
    if week:
        try:
            return ReportPeriod.iso_week(week)
        except ReportInputError:
            raise ReportInputError(
                f"{n.given(n.week, week)}: give an ISO week as YYYY-Www, e.g. 2026-W48 (weeks "
                "01–52, or 53 in a year that has one)."
            ) from None
    if since:
        first = parse_date(n.since, since, n)
        if first > today:
            raise ReportInputError(
                f"{n.given(n.since, first.isoformat())} is after today ({today.isoformat()}, "
                "UTC): give a date in the past."
            )
        return ReportPeriod.since(first, today)
    if not (start and end):
        missing, other = (n.end, n.start) if start else (n.start, n.end)
        raise ReportInputError(
            f"{missing} is missing: a date range needs {n.start} and {n.end}, not {other} alone."
        )
    first, last = parse_date(n.start, start, n), parse_date(n.end, end, n)
    if last < first:
        raise ReportInputError(
            f"{n.given(n.end, last.isoformat())} is before {n.given(n.start, first.isoformat())}: "
            "give the first day first."
        )
    return ReportPeriod.between(first, last)


def _instant(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def report_json(report: Report) -> dict[str, Any]:
    """The report as plain JSON: what it covers, its notes, the statistics and every row.

    ``residuals`` (top level): the per-patient and population summary
    (:mod:`app.services.reports.residuals`); per row: each structure's ``max_mm`` and ``p95_mm``.
    ``part_b_ptv_residual`` (top level): part (b) at the PTV, the same shape (group ``"PTV"``).
    """
    context = report.context
    rows = [
        {
            "patient_id": row.patient_id,
            "course_id": row.course_id,
            "site": row.site,
            "fraction_number": row.fraction_number,
            "date": row.fraction_date.isoformat(),
            "acquired_at": _instant(row.acquired_at),
            "lateral_mm": row.lateral_mm,
            "longitudinal_mm": row.longitudinal_mm,
            "vertical_mm": row.vertical_mm,
            "pitch_deg": row.pitch_deg,
            "roll_deg": row.roll_deg,
            "yaw_deg": row.yaw_deg,
            "vector_mm": vector_mm,
            "trusted": row.trusted,
            "decision": row.decision if row.decision is not None else AWAITING,
            "signed_by": row.signed_by,
            "signed_at": _instant(row.signed_at),
            "repeat_image": row.repeat_image,
            "counted": row.counts_in_statistics,
            **part_columns(row),
            "residuals": [dataclasses.asdict(r) for r in row.residuals],
        }
        for row, vector_mm in zip(report.rows, report.vectors_mm, strict=True)
    ]
    return {
        "title": context.title,
        "period": {
            "label": context.period.label,
            "start": context.period.start.isoformat(),
            "end": context.period.end.isoformat(),
            "description": context.period.description,
        },
        "site": context.site,
        "shift_source": context.shift_source.value,
        "margin_in_use_mm": context.margin_in_use_mm,
        "generated_at": _instant(context.generated_at),
        "generated_by": context.generated_by,
        "notes": list(report.notes),
        "statistics": report.statistics.to_dict(),
        "three_parts": None if report.parts is None else report.parts.to_dict(),
        "offline_protocols": [dataclasses.asdict(outcome) for outcome in report.offline],
        "residuals": dataclasses.asdict(report.residuals),
        "part_b_ptv_residual": dataclasses.asdict(report.part_b_ptv),
        "rows": rows,
    }


def file_name(report: Report, fmt: str) -> str:
    """``setup-errors_2026-W48_signed.pdf``; with the site, ``…_2026-W48_head-and-neck_signed…``.

    Ranges are named by their dates (``2026-11-01_2026-11-20``), cumulative views
    ``since-2026-09-01_2026-11-29``. Only ``A–Z a–z 0–9 . _ -`` appear.
    """
    context = report.context
    period = context.period
    if period.label.startswith("since "):
        stem = f"since-{period.start.isoformat()}_{period.end.isoformat()}"
    elif re.fullmatch(r"\d{4}-W\d{2}", period.label):
        stem = period.label
    else:
        stem = f"{period.start.isoformat()}_{period.end.isoformat()}"
    parts = ["setup-errors", stem]
    if context.site:
        parts.append(_UNSAFE_IN_FILE_NAME.sub("-", context.site).strip("-.") or "site")
    parts.append(context.shift_source.value)
    extension = ".json" if fmt == "json" else FILE_EXTENSIONS[fmt]
    return "_".join(parts) + extension


def render(report: Report, fmt: str, figures: ReportFigures | None = None) -> bytes:
    """The report in ``fmt`` (one of :data:`FORMATS`) as bytes (text formats in UTF-8)."""
    if fmt == "json":
        return json.dumps(report_json(report), ensure_ascii=False, indent=1).encode("utf-8")
    if fmt == "csv":
        return to_csv(report)
    if fmt == "xlsx":
        return to_xlsx(report)
    if fmt == "pdf":
        return to_pdf(report, figures=figures)
    if fmt == "html":
        return to_html(report, figures=figures).encode("utf-8")
    raise ReportInputError(f"format={fmt!r}: give one of {', '.join(FORMATS)}.")

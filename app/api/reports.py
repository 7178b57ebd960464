"""``/api/v1/reports/weekly``: set-up error statistics for the physicists, in five formats."""

from __future__ import annotations

import datetime
from enum import StrEnum, unique
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from app.api.deps import ContextDep, ReportReader, SessionDep
from app.api.fractions import NO_CONTROL_CHARS
from app.errors import UnprocessableError
from app.schemas.common import ERROR_RESPONSES
from app.services.reports import MEDIA_TYPES, ReportInputError
from app.services.reports.export import JSON_MEDIA_TYPE, file_name, parse_period, render
from app.services.reports.query import ReportRequest
from app.services.reports.query import make_report as build_from_database
from registration.stats import ShiftSource

router = APIRouter(prefix="/api/v1", tags=["reports"], responses=ERROR_RESPONSES)


@unique
class ReportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"
    PDF = "pdf"
    HTML = "html"


_MEDIA_TYPES = {"json": JSON_MEDIA_TYPE, **MEDIA_TYPES}
#: shown by the browser (html, pdf) or saved (csv, xlsx)
_DISPOSITION = {"html": "inline", "pdf": "inline", "csv": "attachment", "xlsx": "attachment"}
_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the report (an empty period is a valid report)",
        "content": {media: {} for media in _MEDIA_TYPES.values()},
    }
}


@router.get("/reports/weekly", response_class=Response, responses=_OK)
def weekly_report(
    session: SessionDep,
    ctx: ContextDep,
    principal: ReportReader,
    week: Annotated[str | None, Query(max_length=16, description="ISO week, e.g. 2026-W48")] = None,
    start: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=10)] = None,
    since: Annotated[str | None, Query(max_length=10, description="cumulative, to today")] = None,
    site: Annotated[str | None, Query(max_length=100, pattern=NO_CONTROL_CHARS)] = None,
    format: Annotated[ReportFormat, Query(description="json (default) or a file")] = (
        ReportFormat.JSON
    ),
    source: Annotated[ShiftSource, Query(description="which shift counts")] = ShiftSource.SIGNED,
    margin_mm: Annotated[
        float | None,
        Query(gt=0, le=50, allow_inf_nan=False, description="default: the courses' PTV margin"),
    ] = None,
) -> Response:
    """Set-up errors of a period: per patient, population (M, Σ, σ, margins), early warnings.

    Give the period as ``week=YYYY-Www``, ``from=YYYY-MM-DD&to=YYYY-MM-DD`` or
    ``since=YYYY-MM-DD`` (days in UTC). ``source``: ``signed`` (default; fractions awaiting a
    sign-off are listed but not counted), ``registration``, or ``residual`` (refused: no
    post-correction images are recorded). Rejected fractions are listed, never counted.
    """
    now = datetime.datetime.now(datetime.UTC)
    try:
        request = ReportRequest(
            period=parse_period(week=week, start=start, end=end, since=since, today=now.date()),
            site=site or None,
            source=source,
            margin_mm=margin_mm,
        )
        report = build_from_database(
            session,
            request,
            generated_at=now,
            generated_by=principal.full_name or principal.actor,
            default_margin_mm=ctx.settings.default_ptv_margin_mm,
        )
    except ReportInputError as error:
        raise UnprocessableError(str(error)) from error
    fmt = format.value
    headers = {}
    if fmt in _DISPOSITION:
        headers["Content-Disposition"] = f'{_DISPOSITION[fmt]}; filename="{file_name(report, fmt)}"'
    return Response(render(report, fmt), media_type=_MEDIA_TYPES[fmt], headers=headers)

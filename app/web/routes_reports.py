"""The physicists' report page: pick a period and a site, read the report, download it.

``/reports`` shows the form, the report itself (``/reports/view``, the self-contained HTML the
API serves, in a frame) and download links (``/reports/download``). Every one of them builds
the report with :func:`app.services.reports.query.make_report` and renders it with
:func:`app.services.reports.export.render`, exactly as ``GET /api/v1/reports/weekly`` does:
the same report from the same data. Who may: ``Action.READ_REPORTS`` of
:mod:`app.permissions` (on the pages: physicists; admins have no page session).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy import select

from app.context import ServiceContext
from app.db.models import Course
from app.deps import ContextDep
from app.permissions import Action, may
from app.services.reports import MEDIA_TYPES, ReportInputError
from app.services.reports.export import file_name, parse_period, render
from app.services.reports.model import Report
from app.services.reports.query import ReportRequest, make_report
from app.web import sessions
from app.web.deps import SECURITY_HEADERS, PageViewer, WebRefusalError, page
from app.web.sessions import Viewer
from registration.stats import ShiftSource

router = APIRouter(include_in_schema=False)
DOWNLOADS = ("csv", "xlsx", "pdf")
#: the report page shown in /reports' frame: inline styles and data: images, no script
_VIEW_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'",
    "X-Frame-Options": "SAMEORIGIN",
}
Week = Annotated[str | None, Query(max_length=16)]
Site = Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")]


def _physicist(viewer: Viewer) -> None:
    if not may(viewer.role, Action.READ_REPORTS):
        raise WebRefusalError(403, "the set-up error reports are for physicists")


@dataclass(frozen=True)
class ReportQuery:
    """The period (an ISO week, or ``from``/``to`` dates), the site and the shift source asked
    for in the query string of every report page, as typed."""

    week: str | None
    start: str | None
    end: str | None
    site: str | None
    source: ShiftSource

    def request(self) -> ReportRequest:
        """The report asked for; no period: this week. A bad period is refused (400)."""
        today = datetime.datetime.now(datetime.UTC).date()
        week = self.week
        if not (week or self.start or self.end):
            week = f"{today.isocalendar().year}-W{today.isocalendar().week:02d}"
        try:
            period = parse_period(
                week=week or None,
                start=self.start or None,
                end=self.end or None,
                since=None,
                today=today,
            )
        except ReportInputError as error:
            raise WebRefusalError(400, str(error)) from None
        return ReportRequest(period=period, site=self.site or None, source=self.source)


def report_query(
    week: Week = None,
    start: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=10)] = None,
    site: Site = None,
    source: ShiftSource = ShiftSource.SIGNED,
) -> ReportQuery:
    return ReportQuery(week, start, end, site, source)


ReportQueryDep = Annotated[ReportQuery, Depends(report_query)]


def _report(ctx: ServiceContext, request: ReportRequest, viewer: Viewer) -> Report:
    assert viewer.user is not None
    with ctx.sessions() as db:
        try:
            return make_report(
                db,
                request,
                generated_at=datetime.datetime.now(datetime.UTC),
                generated_by=viewer.user.full_name or viewer.user.username,
                default_margin_mm=ctx.settings.default_ptv_margin_mm,
            )
        except ReportInputError as error:
            raise WebRefusalError(400, str(error)) from None


def _sites(ctx: ServiceContext) -> list[str]:
    with ctx.sessions() as db:
        return [s for s in db.scalars(select(Course.site).distinct().order_by(Course.site)) if s]


@router.get("/reports")
async def reports_page(
    request: Request,
    ctx: ContextDep,
    viewer: PageViewer,
    asked: ReportQueryDep,
) -> Response:
    _physicist(viewer)
    chosen = asked.request()
    params = {"site": asked.site or "", "source": asked.source.value}
    if asked.start or asked.end:
        params |= {"from": asked.start or "", "to": asked.end or ""}
    else:
        params["week"] = chosen.period.label
    query = urlencode(params)
    context = {
        "viewer": viewer.user,
        "csrf_token": sessions.csrf_token(viewer),
        "period": chosen.period.description,
        "week": params.get("week", ""),
        "start": asked.start or "",
        "end": asked.end or "",
        "site": asked.site or "",
        "source": asked.source.value,
        "sources": [s.value for s in ShiftSource],
        "sites": await run_in_threadpool(_sites, ctx),
        "view_url": f"/reports/view?{query}",
        "downloads": [
            (fmt.upper(), f"/reports/download?{query}&format={fmt}") for fmt in DOWNLOADS
        ],
    }
    return page(request, "reports.html", context)


@router.get("/reports/view")
async def report_view(
    ctx: ContextDep,
    viewer: PageViewer,
    asked: ReportQueryDep,
) -> Response:
    _physicist(viewer)
    report = await run_in_threadpool(_report, ctx, asked.request(), viewer)
    html = await run_in_threadpool(render, report, "html")
    return Response(html, media_type=MEDIA_TYPES["html"], headers=_VIEW_HEADERS)


@router.get("/reports/download")
async def report_download(
    ctx: ContextDep,
    viewer: PageViewer,
    format: Annotated[str, Query(pattern="^(csv|xlsx|pdf)$")],
    asked: ReportQueryDep,
) -> Response:
    _physicist(viewer)
    report = await run_in_threadpool(_report, ctx, asked.request(), viewer)
    data = await run_in_threadpool(render, report, format)
    disposition = f'attachment; filename="{file_name(report, format)}"'
    headers = {**SECURITY_HEADERS, "Content-Disposition": disposition}
    return Response(data, media_type=MEDIA_TYPES[format], headers=headers)

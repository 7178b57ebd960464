"""The physicist's daily-QA pages: per machine, a control chart of each axis, the last 30 days,
the offset entry, the acknowledgement of a failed scan, and the monthly export."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from app.deps import MAX_ID, ContextDep
from app.permissions import Action, may
from app.services import daily_qa, qa_export, qa_verdict
from app.web import sessions
from app.web.deps import (
    SECURITY_HEADERS,
    CouchAxisForm,
    DataViewer,
    PageViewer,
    WebRefusalError,
    WebSettingsDep,
    call_service,
    check_form,
    page,
)
from app.web.line_plot import Level, Sample, line_svg
from app.web.review import AXIS_LABELS
from registration.couch import CouchCorrection

router = APIRouter(include_in_schema=False)
Machine = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")]
FractionId = Annotated[int, Path(ge=1, le=MAX_ID)]
DAYS_SHOWN = 30


@router.get("/qa")
async def qa_index(request: Request, ctx: ContextDep, viewer: PageViewer) -> Response:
    courses = await call_service(ctx, daily_qa.all_qa_courses)
    if len(courses) == 1:
        target = f"/qa/{quote(courses[0].machine, safe='')}"
        return Response(status_code=303, headers={"Location": target, **SECURITY_HEADERS})
    context = {
        "viewer": viewer.user,
        "csrf_token": sessions.csrf_token(viewer),
        "machines": courses,
    }
    return page(request, "qa_index.html", context)


def _machine_context(db: Session, machine: str) -> dict[str, Any]:
    qa = daily_qa.qa_course_for_machine(db, machine)
    if qa is None:
        raise WebRefusalError(404, f"machine {machine!r} has no QA course")
    since = daily_qa.local_midnight(date.today() - timedelta(days=DAYS_SHOWN - 1))
    days = daily_qa.machine_days(db, machine, since)
    charts = []
    for axis, (judged, chart) in qa_verdict.charts(days, qa).items():
        label, unit = AXIS_LABELS[axis]
        samples = [
            Sample(d.scanned_at.astimezone().strftime("%m-%d"), v, i in chart.out_of_tolerance)
            for i, (d, v) in enumerate(zip(judged, chart.values, strict=True))
        ]
        levels = [
            Level(chart.upper_tolerance, "tolerance", "#e4572e"),
            Level(chart.lower_tolerance, "tolerance", "#e4572e"),
            Level(chart.upper_control_limit, "upper control limit", "#888", "2 3"),
            Level(chart.lower_control_limit, "lower control limit", "#888", "2 3"),
        ]
        svg = line_svg(samples, levels, unit=unit, name=f"{label} error", css_id=f"chart-{axis}")
        charts.append({"axis": axis, "label": label, "unit": unit, "svg": svg, "chart": chart})
    return {
        "qa": qa,
        "days": list(reversed(days)),
        "charts": charts,
        "open_failures": [d for d in days if d.needs_acknowledgement],
        "axes": [(axis, *AXIS_LABELS[axis]) for axis in CouchCorrection.AXES],
        "month": date.today().strftime("%Y-%m"),
        "days_shown": DAYS_SHOWN,
    }


@router.get("/qa/{machine}")
async def qa_page(
    request: Request, machine: Machine, ctx: ContextDep, viewer: PageViewer
) -> Response:
    context = await call_service(ctx, lambda db: _machine_context(db, machine))
    context.update(
        viewer=viewer.user,
        csrf_token=sessions.csrf_token(viewer),
        is_physicist=may(viewer.role, Action.MANAGE_QA),
        can_enter_offset=may(viewer.role, Action.ENTER_QA_OFFSET),
    )
    return page(request, "qa.html", context)


def _back(machine: str) -> Response:
    location = f"/qa/{quote(machine, safe='')}"
    return Response(status_code=303, headers={"Location": location, **SECURITY_HEADERS})


@router.post("/qa/{machine}/scans/{fraction_id}/offset")
async def qa_enter_offset(
    machine: Machine,
    fraction_id: FractionId,
    ctx: ContextDep,
    settings: WebSettingsDep,
    viewer: DataViewer,
    axes: CouchAxisForm,
    csrf_token: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """The couch offset APPLIED to the phantom for this scan (IEC mm and degrees)."""
    user = check_form(viewer, csrf_token, settings.max_age_seconds, Action.ENTER_QA_OFFSET)
    values = axes.numbers(daily_qa.MAX_OFFSET_MM, daily_qa.MAX_OFFSET_DEG, default=0.0)
    actor = f"web:{user.username}"
    offset = CouchCorrection(*values)
    await call_service(
        ctx, lambda db: daily_qa.record_offset(db, fraction_id, offset, actor), writer=True
    )
    return _back(machine)


@router.post("/qa/{machine}/scans/{fraction_id}/acknowledge")
async def qa_acknowledge(
    machine: Machine,
    fraction_id: FractionId,
    ctx: ContextDep,
    settings: WebSettingsDep,
    viewer: DataViewer,
    csrf_token: Annotated[str, Form(max_length=1000)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    user = check_form(viewer, csrf_token, settings.max_age_seconds, Action.MANAGE_QA)
    actor = f"web:{user.username}"
    await call_service(
        ctx, lambda db: daily_qa.acknowledge_qa(db, fraction_id, user, note, actor), writer=True
    )
    return _back(machine)


@router.get("/qa/{machine}/export")
async def qa_export_file(
    machine: Machine,
    ctx: ContextDep,
    viewer: PageViewer,
    month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$")],
    format: Annotated[str, Query(pattern=r"^(csv|pdf)$")] = "csv",
) -> Response:
    if not may(viewer.role, Action.MANAGE_QA):
        raise WebRefusalError(403, "the monthly QA export is for physicists")
    document = await call_service(ctx, lambda db: qa_export.monthly(db, machine, month, format))
    return Response(
        document.content,
        media_type=document.media_type,
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="{document.file_name}"',
        },
    )

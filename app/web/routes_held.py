"""The physicists' page of held DICOM series (``/dicom/held``) and the decision on each.

A received series no rule identified is held (:mod:`app.dicom.unassigned`). Here a physicist
assigns it as an MVCT of one of its patient's courses or as the planning CT of a new course, or
discards it, through the same functions as ``/api/v1/dicom/unassigned``. A decision that is
refused (409: someone decided first; 404; 422) is shown on the page, above the list as it is now.
Who may: ``Action.ASSIGN_DICOM_SERIES`` of :mod:`app.permissions` (physicists).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy.orm import Session

from app.context import ServiceContext
from app.db import repository as repo
from app.db.models import Course
from app.deps import MAX_ID, ContextDep
from app.dicom import unassigned
from app.dicom.series_ingest import NewCourseSettings, new_course_settings
from app.dicom.service import DicomService
from app.errors import ServiceError, UnprocessableError
from app.permissions import Action, may
from app.web import sessions
from app.web.deps import (
    SECURITY_HEADERS,
    DataViewer,
    PageViewer,
    WebRefusalError,
    WebSettingsDep,
    page,
)
from app.web.sessions import Viewer

router = APIRouter(include_in_schema=False)
PAGE = "/dicom/held"
SeriesId = Annotated[int, Path(ge=1, le=MAX_ID)]
Note = Annotated[str, Form(max_length=unassigned.MAX_NOTE_CHARS)]
RECENT_SHOWN = 10


def may_decide(viewer: Viewer) -> bool:
    return may(viewer.role, Action.ASSIGN_DICOM_SERIES)


def held_count(ctx: ServiceContext, viewer: Viewer) -> int | None:
    """How many series wait for a decision, for those who decide (None for everyone else)."""
    if not may_decide(viewer):
        return None
    with ctx.sessions() as db:
        return unassigned.count_held(db)


def _physicist(viewer: Viewer) -> None:
    if not may_decide(viewer):
        raise WebRefusalError(403, "the held DICOM series are for physicists")


@dataclass(frozen=True)
class Refusal:
    status_code: int
    detail: str
    series_id: int | None = None


@dataclass(frozen=True)
class CourseChoice:
    course_id: int
    label: str


@dataclass(frozen=True)
class HeldRow:
    held: unassigned.HeldSeries
    short_uid: str
    received_local: str
    courses: tuple[CourseChoice, ...]  #: the patient's courses, latest first
    new_course: str  #: the settings a new course of this patient would have


def short_uid(uid: str) -> str:
    return uid if len(uid) <= 20 else f"{uid[:8]}…{uid[-10:]}"


def _local(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def _course_label(course: Course) -> str:
    planning = course.planning_series
    return (
        f"course {course.id}: “{planning.series_description or 'no description'}” of "
        f"{_local(course.created_at)[:10]}, site {course.site or '—'}, "
        f"{course.ptv_margin_mm:g} mm, {int(course.dof)} DOF"
    )


def _new_course_text(new: NewCourseSettings) -> str:
    s = new.settings
    values = f"{s.ptv_margin_mm:g} mm PTV margin, {int(s.dof)} DOF, {s.mode.value} mode, site "
    values += f"“{s.site}”" if s.site else "none"
    if new.from_course_id is None:
        return f"a first course of this patient, with the defaults: {values}"
    return f"settings of course {new.from_course_id}: {values}"


def _rows(db: Session, default_margin_mm: float) -> list[HeldRow]:
    patients: dict[str, tuple[tuple[CourseChoice, ...], str]] = {}
    rows = []
    for held in reversed(unassigned.list_held(db)):  # newest first
        if held.patient_id not in patients:
            courses = repo.courses(db, held.patient_id)
            new = new_course_settings(db, held.patient_id, default_margin_mm)
            patients[held.patient_id] = (
                tuple(CourseChoice(c.id, _course_label(c)) for c in reversed(courses)),
                _new_course_text(new),
            )
        choices, new_course = patients[held.patient_id]
        rows.append(
            HeldRow(
                held=held,
                short_uid=short_uid(held.series_instance_uid),
                received_local=_local(held.received_at),
                courses=choices,
                new_course=new_course,
            )
        )
    return rows


def _notice(decided: unassigned.DecidedSeries) -> str:
    what = f"Series {decided.series_id} of patient {decided.patient_id}"
    if decided.resolution == "mvct":
        return (
            f"{what} is an MVCT of course {decided.course_id} (fraction {decided.fraction_id}, "
            f"queued for registration: it is on the worklist). Decided by {decided.resolved_by}."
        )
    if decided.resolution == "planning":
        return (
            f"{what} is the planning CT of course {decided.course_id}. "
            f"Decided by {decided.resolved_by}."
        )
    return f"{what} was discarded by {decided.resolved_by}: {decided.note}"


def _context(
    ctx: ServiceContext, viewer: Viewer, decided: int | None, refusal: Refusal | None
) -> dict[str, Any]:
    with ctx.sessions() as db:
        rows = _rows(db, ctx.settings.default_ptv_margin_mm)
        recent = unassigned.recent_decisions(db, RECENT_SHOWN)
    notice = next((_notice(d) for d in recent if d.series_id == decided), None)
    return {
        "viewer": viewer.user,
        "csrf_token": sessions.csrf_token(viewer),
        "held_count": len(rows),
        "rows": rows,
        "recent": [(d, _local(d.resolved_at)) for d in recent],
        "notice": None if refusal is not None else notice,
        "refusal": refusal,
        "note_max": unassigned.MAX_NOTE_CHARS,
    }


async def _page(
    request: Request,
    ctx: ServiceContext,
    viewer: Viewer,
    decided: int | None = None,
    refusal: Refusal | None = None,
) -> Response:
    context = await run_in_threadpool(_context, ctx, viewer, decided, refusal)
    status = 200 if refusal is None else refusal.status_code
    return page(request, "held.html", context, status_code=status)


@router.get(PAGE)
async def held_page(
    request: Request,
    ctx: ContextDep,
    viewer: PageViewer,
    decided: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Response:
    _physicist(viewer)
    return await _page(request, ctx, viewer, decided)


def _course_id(text: str) -> int | None:
    if not text.strip():
        return None
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_ID:
        raise UnprocessableError(f"course {text!r} is not a course id: choose one from the list")
    return int(text)


async def _decide(
    request: Request,
    ctx: ServiceContext,
    settings_max_age_s: float,
    viewer: Viewer,
    csrf_token: str,
    series_id: int,
    decide: Callable[[str], object],
) -> Response:
    """Run ``decide(actor)`` for a physicist with a valid form; back to the list, or the list
    with the refusal in words."""
    _physicist(viewer)
    assert viewer.user is not None
    if not sessions.csrf_valid(viewer, csrf_token, settings_max_age_s):
        detail = "the form has expired (CSRF check failed): nothing was decided; decide again"
        return await _page(request, ctx, viewer, refusal=Refusal(403, detail, series_id))
    try:
        await run_in_threadpool(decide, f"web:{viewer.user.username}")
    except ServiceError as exc:
        refusal = Refusal(exc.status_code, exc.detail, series_id)
        return await _page(request, ctx, viewer, refusal=refusal)
    location = f"{PAGE}?decided={series_id}#recent"
    return Response(status_code=303, headers={"Location": location, **SECURITY_HEADERS})


@router.post(f"{PAGE}/{{series_id}}/assign")
async def held_assign(
    request: Request,
    series_id: SeriesId,
    ctx: ContextDep,
    settings: WebSettingsDep,
    viewer: DataViewer,
    as_: Annotated[str, Form(alias="as", max_length=16)] = "",
    course_id: Annotated[str, Form(max_length=20)] = "",
    note: Note = "",
    csrf_token: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """as=mvct with course_id: a fraction of that course; as=planning: a new course."""
    dicom: DicomService = request.app.state.dicom

    def decide(actor: str) -> None:
        dicom.assign_held(series_id, as_, _course_id(course_id), actor, note)

    return await _decide(
        request, ctx, settings.max_age_seconds, viewer, csrf_token, series_id, decide
    )


@router.post(f"{PAGE}/{{series_id}}/discard")
async def held_discard(
    request: Request,
    series_id: SeriesId,
    ctx: ContextDep,
    settings: WebSettingsDep,
    viewer: DataViewer,
    reason: Note = "",
    csrf_token: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    def decide(actor: str) -> None:
        unassigned.discard(ctx, series_id, actor, reason)

    return await _decide(
        request, ctx, settings.max_age_seconds, viewer, csrf_token, series_id, decide
    )

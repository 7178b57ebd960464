"""Anatomy-change alerts (course trend, alert levels, acknowledgement) and daily imaging QA."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from app.api.deps import Configurer, Principal, Reader, SessionDep, require
from app.api.fractions import NO_CONTROL_CHARS
from app.db import repository as repo
from app.db.models import User
from app.deps import MAX_ID
from app.errors import NotFoundError, UnprocessableError
from app.permissions import Action
from app.schemas.common import ERROR_RESPONSES
from app.services import anatomy, daily_qa, qa_export, qa_verdict
from registration.couch import CouchCorrection
from registration.qa_phantom import QaImageFigures

router = APIRouter(prefix="/api/v1", tags=["anatomy and QA"], responses=ERROR_RESPONSES)
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
MachineName = Annotated[str, Path(min_length=1, max_length=64, pattern=NO_CONTROL_CHARS)]
Physician = Annotated[Principal, Depends(require(Action.ACKNOWLEDGE_ANATOMY))]
Physicist = Annotated[Principal, Depends(require(Action.MANAGE_QA))]
QaOperator = Annotated[Principal, Depends(require(Action.ENTER_QA_OFFSET))]


class AnatomySettingsIn(BaseModel):
    """Alert levels of a course; fields left out take the defaults (see the README)."""

    model_config = ConfigDict(extra="forbid")

    surface_change_mm: float | None = Field(default=None, gt=0, le=100)
    area_change_percent: float | None = Field(default=None, gt=0, le=100)
    misfit_increase: float | None = Field(default=None, gt=0, le=1)
    baseline_fractions: int | None = Field(default=None, ge=1, le=20)
    trend_fractions: int | None = Field(default=None, ge=3, le=40)
    trend_change_mm: float | None = Field(default=None, gt=0, le=100)
    trend_step_tolerance_mm: float | None = Field(default=None, gt=0, le=100)


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=anatomy.MAX_NOTE)


class QaCourseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    course_id: int = Field(ge=1, le=MAX_ID, description="the course of the phantom's CT")
    machine: str = Field(
        min_length=1,
        max_length=64,
        pattern=NO_CONTROL_CHARS,
        description="the machine's DICOM StationName, as on the worklist",
    )
    treats_srs_sbrt: bool = Field(
        default=False, description="TG-142 default tolerance: 1 mm if true, else 2 mm"
    )
    translation_tolerance_mm: float | None = Field(default=None, gt=0, le=10)
    rotation_tolerance_deg: float | None = Field(default=None, gt=0, le=5)


class QaBaselineIn(BaseModel):
    """Image figures at commissioning (MVCT numbers); the inserts by the phantom's names."""

    model_config = ConfigDict(extra="forbid")

    noise_hu: float = Field(gt=0, le=500)
    uniformity_hu: float = Field(ge=0, le=500)
    inserts: dict[str, Annotated[float, Field(ge=-1100, le=3000)]] = Field(max_length=20)


class CouchOffsetIn(BaseModel):
    """The couch offset APPLIED to the phantom (IEC 61217 table axes, mm and degrees)."""

    model_config = ConfigDict(extra="forbid")

    lateral_mm: float = Field(ge=-daily_qa.MAX_OFFSET_MM, le=daily_qa.MAX_OFFSET_MM)
    longitudinal_mm: float = Field(ge=-daily_qa.MAX_OFFSET_MM, le=daily_qa.MAX_OFFSET_MM)
    vertical_mm: float = Field(ge=-daily_qa.MAX_OFFSET_MM, le=daily_qa.MAX_OFFSET_MM)
    pitch_deg: float = Field(default=0.0, ge=-daily_qa.MAX_OFFSET_DEG, le=daily_qa.MAX_OFFSET_DEG)
    roll_deg: float = Field(default=0.0, ge=-daily_qa.MAX_OFFSET_DEG, le=daily_qa.MAX_OFFSET_DEG)
    yaw_deg: float = Field(default=0.0, ge=-daily_qa.MAX_OFFSET_DEG, le=daily_qa.MAX_OFFSET_DEG)


def person(session: Session, principal: Principal) -> User:
    """The signed-in person behind ``principal`` (an acknowledgement names a person)."""
    user = repo.user_by_username(session, principal.name) if principal.kind == "user" else None
    if user is None:
        raise UnprocessableError("an acknowledgement is made by a person: log in as a user")
    return user


@router.get("/courses/{course_id}/anatomy")
def get_course_anatomy(course_id: Id, session: SessionDep, _: Reader) -> dict[str, Any]:
    """The course's alert levels and every measured fraction with its figures and alert."""
    if repo.course_by_id(session, course_id) is None:
        raise NotFoundError(f"course {course_id} does not exist")
    return {
        "course_id": course_id,
        "settings": anatomy.course_settings(session, course_id).to_dict(),
        "fractions": [
            {"fraction_id": e.fraction_id, "fraction_number": e.fraction_number, **e.to_dict()}
            for e in anatomy.course_anatomy(session, course_id)
        ],
    }


@router.put("/courses/{course_id}/anatomy-settings")
def put_anatomy_settings(
    course_id: Id, body: AnatomySettingsIn, session: SessionDep, principal: Configurer
) -> dict[str, Any]:
    values = body.model_dump(exclude_none=True)
    return anatomy.set_course_settings(session, course_id, values, principal.actor).to_dict()


@router.post("/fractions/{fraction_id}/anatomy-acknowledgement", status_code=201)
def acknowledge_anatomy(
    fraction_id: Id, body: NoteIn, session: SessionDep, principal: Physician
) -> dict[str, str]:
    user = person(session, principal)
    return anatomy.acknowledge_anatomy(
        session, fraction_id, user, body.note, principal.actor
    ).to_dict()


@router.post("/qa/machines", status_code=201)
def create_qa_course(body: QaCourseIn, session: SessionDep, principal: Physicist) -> dict[str, Any]:
    qa = daily_qa.create_qa_course(
        session,
        body.course_id,
        body.machine,
        body.treats_srs_sbrt,
        principal.actor,
        body.translation_tolerance_mm,
        body.rotation_tolerance_deg,
    )
    return _qa_course(qa)


@router.get("/qa/machines")
def list_qa_courses(session: SessionDep, _: Reader) -> list[dict[str, Any]]:
    return [_qa_course(qa) for qa in daily_qa.all_qa_courses(session)]


@router.get("/qa/machines/{machine}")
def get_machine_qa(
    machine: MachineName,
    session: SessionDep,
    _: Reader,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> dict[str, Any]:
    """The machine's QA scans of the last ``days`` days and the control chart of each axis."""
    qa = daily_qa.qa_course_for_machine(session, machine)
    if qa is None:
        raise NotFoundError(f"machine {machine!r} has no QA course")
    since = daily_qa.local_midnight(date.today() - timedelta(days=days - 1))
    scans = daily_qa.machine_days(session, machine, since)
    charts = qa_verdict.charts(scans, qa)
    return {
        **_qa_course(qa),
        "scans": [d.to_dict() for d in scans],
        "control_charts": {
            axis: {"fraction_ids": [d.fraction_id for d in judged], **chart.to_dict()}
            for axis, (judged, chart) in charts.items()
        },
    }


@router.put("/qa/machines/{machine}/baseline")
def put_qa_baseline(
    machine: MachineName,
    session: SessionDep,
    principal: Physicist,
    body: QaBaselineIn | None = None,
) -> dict[str, Any]:
    """Set the image baseline (null: the mean of the first scans again)."""
    figures = (
        None
        if body is None
        else QaImageFigures(body.noise_hu, body.uniformity_hu, tuple(body.inserts.items()))
    )
    return _qa_course(daily_qa.set_baseline(session, machine, figures, principal.actor))


@router.get("/qa/machines/{machine}/export")
def export_machine_qa(
    machine: MachineName,
    session: SessionDep,
    _: Physicist,
    month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM")],
    format: Annotated[Literal["csv", "pdf"], Query()] = "csv",
) -> Response:
    """The month's QA record of the machine, to file: CSV or PDF."""
    document = qa_export.monthly(session, machine, month, format)
    return Response(
        document.content,
        media_type=document.media_type,
        headers={"Content-Disposition": f'attachment; filename="{document.file_name}"'},
    )


@router.put("/fractions/{fraction_id}/qa-offset")
def put_qa_offset(
    fraction_id: Id, body: CouchOffsetIn, session: SessionDep, principal: QaOperator
) -> dict[str, Any]:
    """Enter (or correct) the couch offset applied to the phantom for this QA scan."""
    daily_qa.record_offset(
        session, fraction_id, CouchCorrection(**body.model_dump()), principal.actor
    )
    return _fraction_qa(session, fraction_id)


@router.post("/fractions/{fraction_id}/qa-acknowledgement", status_code=201)
def acknowledge_qa(
    fraction_id: Id, body: NoteIn, session: SessionDep, principal: Physicist
) -> dict[str, str]:
    user = person(session, principal)
    return daily_qa.acknowledge_qa(session, fraction_id, user, body.note, principal.actor).to_dict()


def _fraction_qa(session: Session, fraction_id: int) -> dict[str, Any]:
    fraction = repo.fraction_by_id(session, fraction_id)
    day = None if fraction is None else daily_qa.fraction_qa(session, fraction)
    if day is None:
        raise NotFoundError(f"fraction {fraction_id} is not a QA scan")
    return day.to_dict()


def _qa_course(qa: Any) -> dict[str, Any]:
    return {
        "machine": qa.machine,
        "course_id": qa.course_id,
        "treats_srs_sbrt": qa.treats_srs_sbrt,
        "translation_tolerance_mm": qa.translation_tolerance_mm,
        "rotation_tolerance_deg": qa.rotation_tolerance_deg,
        "baseline": qa.baseline,
    }

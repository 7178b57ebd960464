"""``/api/v1/courses``: a patient's planning CT and the settings its fractions use."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import Configurer, ContextDep, CourseEditor, Reader, SessionDep
from app.api.fractions import (
    MAX_ID,
    NO_CONTROL_CHARS,
    IsocenterField,
    PatientIdField,
    SeriesUidField,
    parse_isocenter,
)
from app.api.schemas_common import ERROR_RESPONSES
from app.context import ServiceContext
from app.courses import CourseChanges, CourseCreated, CourseRequest, create_course, update_course
from app.db import repository as repo
from app.db.models import Course
from app.errors import NotFoundError
from app.ingest import Upload, save_uploads, upload_folder
from registration.couch import Dof
from registration.frames import PatientPosition
from registration.geometry import LpsPoint
from registration.result import Mode

router = APIRouter(prefix="/api/v1", tags=["courses"], responses=ERROR_RESPONSES)


class CoursePublic(BaseModel):
    id: int
    patient_id: str
    planning_series_instance_uid: str
    planning_content_sha256: str
    isocenter_lps_mm: list[float] | None = None
    patient_position: str
    ptv_margin_mm: float
    dof: int
    mode: str
    site: str
    created_at: datetime
    created_by: str


class CourseUpdate(BaseModel):
    """Fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    ptv_margin_mm: float | None = Field(default=None, ge=0, le=50)
    dof: Dof | None = None
    mode: Mode | None = None
    site: str | None = Field(default=None, max_length=100, pattern=NO_CONTROL_CHARS)
    isocenter_lps_mm: list[Annotated[float, Field(allow_inf_nan=False)]] | None = Field(
        default=None, min_length=3, max_length=3
    )


class CourseList(BaseModel):
    courses: list[CoursePublic] = Field(default_factory=list)


def course_public(course: Course) -> CoursePublic:
    iso = (course.isocenter_x_mm, course.isocenter_y_mm, course.isocenter_z_mm)
    return CoursePublic(
        id=course.id,
        patient_id=course.patient_id,
        planning_series_instance_uid=course.planning_series.series_instance_uid,
        planning_content_sha256=course.planning_series.content_sha256,
        isocenter_lps_mm=None if None in iso else list(iso),  # type: ignore[arg-type]
        patient_position=course.patient_position,
        ptv_margin_mm=course.ptv_margin_mm,
        dof=course.dof,
        mode=course.mode,
        site=course.site,
        created_at=course.created_at,
        created_by=course.created_by,
    )


@router.post(
    "/courses",
    status_code=201,
    response_model=CoursePublic,
    responses={200: {"model": CoursePublic, "description": "the same course existed already"}},
)
async def post_course(
    response: Response,
    principal: CourseEditor,
    ctx: ContextDep,
    patient_id: PatientIdField,
    planning: Annotated[
        list[UploadFile], File(description="the planning CT: the series' DICOM files, or a .zip")
    ],
    isocenter: IsocenterField = None,
    patient_position: Annotated[
        PatientPosition | None, Form(description="checked against the planning CT's header")
    ] = None,
    ptv_margin_mm: Annotated[
        float | None, Form(ge=0, le=50, description="CTV→PTV margin; default 3 mm")
    ] = None,
    dof: Annotated[Dof, Form(description="what the couch corrects: 6, 4 (+roll) or 3")] = Dof.SIX,
    mode: Annotated[Mode, Form()] = Mode.TISSUE,
    site: Annotated[str, Form(max_length=100, pattern=NO_CONTROL_CHARS)] = "",
    planning_series_uid: SeriesUidField = None,
) -> CoursePublic:
    course_request = partial(
        CourseRequest,
        patient_id=patient_id,
        isocenter=parse_isocenter(isocenter),
        patient_position=patient_position,
        ptv_margin_mm=ptv_margin_mm,
        dof=dof,
        mode=mode,
        site=site,
        planning_series_uid=planning_series_uid or None,
    )
    created = await run_in_threadpool(
        _save_and_create, ctx, planning, course_request, principal.actor
    )
    if not created.created:
        response.status_code = 200
    response.headers["Location"] = f"/api/v1/courses/{created.course_id}"
    return await run_in_threadpool(_load, ctx, created.course_id)


@router.get("/courses", response_model=CourseList)
def list_courses(
    session: SessionDep,
    _: Reader,
    patient_id: Annotated[
        str | None, Query(min_length=1, max_length=64, pattern=NO_CONTROL_CHARS)
    ] = None,
) -> CourseList:
    return CourseList(courses=[course_public(c) for c in repo.courses(session, patient_id)])


@router.get("/courses/{course_id}", response_model=CoursePublic)
def get_course(
    course_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep, _: Reader
) -> CoursePublic:
    course = repo.course_by_id(session, course_id)
    if course is None:
        raise NotFoundError(f"course {course_id} does not exist")
    return course_public(course)


@router.patch("/courses/{course_id}", response_model=CoursePublic)
async def patch_course(
    course_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    changes: CourseUpdate,
    principal: Configurer,
    ctx: ContextDep,
) -> CoursePublic:
    """Change a course's margin, dof policy, mode, site or isocentre (physicist, physician)."""
    iso = changes.isocenter_lps_mm
    course_changes = CourseChanges(
        ptv_margin_mm=changes.ptv_margin_mm,
        dof=changes.dof,
        mode=changes.mode,
        site=changes.site,
        isocenter=None if iso is None else LpsPoint.from_array(iso),
    )
    await run_in_threadpool(update_course, ctx, course_id, course_changes, principal.actor)
    return await run_in_threadpool(_load, ctx, course_id)


def _save_and_create(
    ctx: ServiceContext,
    planning: Sequence[Upload],
    request: Callable[..., CourseRequest],
    actor: str,
) -> CourseCreated:
    """Save the uploads to a private folder, then hand the saved files to the use case."""
    with upload_folder(ctx.store) as work:
        saved = save_uploads(planning, work, "planning CT", 4 * ctx.settings.max_upload_bytes)
        return create_course(ctx, request(planning=saved), actor)


def _load(ctx: ServiceContext, course_id: int) -> CoursePublic:
    with ctx.sessions() as session:
        course = repo.course_by_id(session, course_id)
        if course is None:  # pragma: no cover - it was committed before
            raise NotFoundError(f"course {course_id} does not exist")
        return course_public(course)

"""``/api/v1/courses``: a patient's planning CT and the settings its fractions use."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session, object_session

from app.api.deps import Configurer, ContextDep, CourseEditor, Reader, SessionDep
from app.api.fractions import (
    NO_CONTROL_CHARS,
    IsocenterField,
    PatientIdField,
    RtPlanField,
    RtStructField,
    RtUploads,
    SeriesUidField,
    parse_isocenter,
)
from app.context import ServiceContext
from app.db import repository as repo
from app.db.models import Course
from app.db.models_planning import PlanningKind, PlanningObject
from app.deps import MAX_ID
from app.errors import NotFoundError
from app.schemas.common import ERROR_RESPONSES
from app.services.courses import (
    CourseChanges,
    CourseCreated,
    CourseRequest,
    create_course,
    put_rt_object,
    update_course,
)
from app.services.ingest import Upload, save_uploads, upload_folder
from app.services.planning import current
from registration.couch import Dof
from registration.frames import PatientPosition
from registration.geometry import LpsPoint
from registration.result import Mode

RTSTRUCT, RTPLAN = PlanningKind.RTSTRUCT, PlanningKind.RTPLAN
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
    match_structure: str | None = None
    match_margin_mm: float
    prv_margin_mm: float
    serial_oar_names: list[str]
    rtstruct: RtObjectPublic | None = None
    rtplan: RtObjectPublic | None = None
    created_at: datetime
    created_by: str
    machine_profile: str | None = Field(
        default=None,
        description="the course's machine profile; None: matched per fraction by StationName",
    )
    rotation_axis_lps_mm: list[float] | None = Field(
        default=None,
        description="a point of the machine's bore axis, planning LPS mm (TomoTherapy: the "
        "plan's machine isocentre); None: unknown, a bore-axis roll is flagged",
    )


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
    machine_profile: str | None = Field(
        default=None, min_length=1, max_length=100, pattern=NO_CONTROL_CHARS
    )
    rotation_axis_lps_mm: list[Annotated[float, Field(allow_inf_nan=False)]] | None = Field(
        default=None, min_length=3, max_length=3
    )
    match_structure: str | None = Field(
        default=None,
        max_length=64,
        pattern=NO_CONTROL_CHARS,
        description="a ROI name, or PTV (every PTV-type ROI); empty clears it",
    )
    match_margin_mm: float | None = Field(default=None, ge=0, le=100)
    prv_margin_mm: float | None = Field(default=None, ge=0, le=50)
    serial_oar_names: (
        list[Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[^,\x00-\x1f\x7f]*$")]]
        | None
    ) = Field(default=None, max_length=20)


class RtObjectPublic(BaseModel):
    """The RT Structure Set or RT Plan a course uses now."""

    sop_instance_uid: str
    content_sha256: str
    label: str
    approval_status: str
    structures: list[dict[str, Any]] | None = None
    isocenters_lps_mm: list[list[float]] | None = None
    warnings: list[str]
    created_at: datetime
    created_by: str


def rt_object_public(obj: PlanningObject | None) -> RtObjectPublic | None:
    if obj is None:
        return None
    return RtObjectPublic(
        sop_instance_uid=obj.sop_instance_uid,
        content_sha256=obj.content_sha256,
        label=obj.label,
        approval_status=obj.approval_status,
        structures=obj.summary.get("structures"),
        isocenters_lps_mm=obj.summary.get("isocenters_lps_mm"),
        warnings=list(obj.warnings),
        created_at=obj.created_at,
        created_by=obj.created_by,
    )


def _current(session: Session | None, course: Course, kind: PlanningKind) -> RtObjectPublic | None:
    return None if session is None else rt_object_public(current(session, course.id, kind))


class CourseList(BaseModel):
    courses: list[CoursePublic] = Field(default_factory=list)


def course_public(course: Course) -> CoursePublic:
    session = object_session(course)
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
        match_structure=course.match_structure,
        match_margin_mm=course.match_margin_mm,
        prv_margin_mm=course.prv_margin_mm,
        serial_oar_names=list(course.serial_oar_name_parts),
        rtstruct=None
        if session is None
        else rt_object_public(current(session, course.id, RTSTRUCT)),
        rtplan=None if session is None else rt_object_public(current(session, course.id, RTPLAN)),
        created_at=course.created_at,
        created_by=course.created_by,
        machine_profile=course.machine_profile_name,
        rotation_axis_lps_mm=(
            None if (axis := course.rotation_axis_point) is None else axis.as_array().tolist()
        ),
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
    rtstruct: RtStructField = None,
    rtplan: RtPlanField = None,
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
        _save_and_create,
        ctx,
        planning,
        RtUploads(rtstruct or None, rtplan or None),
        course_request,
        principal.actor,
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
    """Change a course's margin, dof, mode, site, isocentre, machine profile or bore axis point."""
    iso = changes.isocenter_lps_mm
    course_changes = CourseChanges(
        ptv_margin_mm=changes.ptv_margin_mm,
        dof=changes.dof,
        mode=changes.mode,
        site=changes.site,
        isocenter=None if iso is None else LpsPoint.from_array(iso),
        machine_profile_name=changes.machine_profile,
        rotation_axis=(
            None
            if changes.rotation_axis_lps_mm is None
            else LpsPoint.from_array(changes.rotation_axis_lps_mm)
        ),
        match_structure=changes.match_structure,
        match_margin_mm=changes.match_margin_mm,
        prv_margin_mm=changes.prv_margin_mm,
        serial_oar_names=None
        if changes.serial_oar_names is None
        else tuple(changes.serial_oar_names),
    )
    await run_in_threadpool(update_course, ctx, course_id, course_changes, principal.actor)
    return await run_in_threadpool(_load, ctx, course_id)


@router.put("/courses/{course_id}/rtstruct", response_model=CoursePublic)
async def put_rtstruct(
    course_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    principal: CourseEditor,
    ctx: ContextDep,
    rtstruct: Annotated[list[UploadFile], File(description="the RT Structure Set (DICOM)")],
) -> CoursePublic:
    """Attach (or replace) the course's RT Structure Set; checked against its planning CT."""
    await run_in_threadpool(_save_and_put, ctx, course_id, RTSTRUCT, rtstruct, principal.actor)
    return await run_in_threadpool(_load, ctx, course_id)


@router.put("/courses/{course_id}/rtplan", response_model=CoursePublic)
async def put_rtplan(
    course_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    principal: CourseEditor,
    ctx: ContextDep,
    rtplan: Annotated[list[UploadFile], File(description="the RT Plan (DICOM)")],
) -> CoursePublic:
    """Attach (or replace) the course's RT Plan; checked against its CT and structure set."""
    await run_in_threadpool(_save_and_put, ctx, course_id, RTPLAN, rtplan, principal.actor)
    return await run_in_threadpool(_load, ctx, course_id)


def _save_and_put(
    ctx: ServiceContext,
    course_id: int,
    kind: PlanningKind,
    files: Sequence[Upload],
    actor: str,
) -> None:
    label = "RT Structure Set" if kind is RTSTRUCT else "RT Plan"
    with upload_folder(ctx.store) as work:
        saved = save_uploads(files, work, label, ctx.settings.max_upload_bytes)
        put_rt_object(ctx, course_id, kind, saved, actor)


def _save_and_create(
    ctx: ServiceContext,
    planning: Sequence[Upload],
    rt: RtUploads,
    request: Callable[..., CourseRequest],
    actor: str,
) -> CourseCreated:
    """Save the uploads to a private folder, then hand the saved files to the use case."""
    limit = 4 * ctx.settings.max_upload_bytes
    with upload_folder(ctx.store) as work:
        saved = save_uploads(planning, work / "planning", "planning CT", limit)
        rtstruct, rtplan = rt.save(work, limit)
        return create_course(ctx, request(planning=saved, rtstruct=rtstruct, rtplan=rtplan), actor)


def _load(ctx: ServiceContext, course_id: int) -> CoursePublic:
    with ctx.sessions() as session:
        course = repo.course_by_id(session, course_id)
        if course is None:  # pragma: no cover - it was committed before
            raise NotFoundError(f"course {course_id} does not exist")
        return course_public(course)

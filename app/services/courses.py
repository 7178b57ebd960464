"""Creating a course explicitly: a patient, a planning CT and the settings its fractions use."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.context import ServiceContext
from app.db import repository as repo
from app.db.models import Course, ImageSeries
from app.db.models_planning import PlanningKind
from app.errors import ConflictError, NotFoundError, UnprocessableError
from app.services import machines
from app.services import stored_series as series_ops
from app.services.ingest import ParsedSeries, UploadedFiles, parse_series
from app.services.planning import (
    attach_package,
    check_for_course,
    check_package,
    ct_identity,
    package_hashes,
    read_package,
    split_rt_files,
)
from app.storage import ImageStore
from registration.couch import Dof
from registration.frames import PatientPosition
from registration.geometry import LpsPoint
from registration.result import Mode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CourseSettings:
    """What every fraction of a course uses unless it says otherwise."""

    ptv_margin_mm: float
    dof: Dof = Dof.SIX
    mode: Mode = Mode.TISSUE
    site: str = ""
    isocenter: LpsPoint | None = None


@dataclass(frozen=True)
class CourseRequest:
    patient_id: str
    planning: UploadedFiles  #: saved already (see :mod:`app.services.ingest`)
    isocenter: LpsPoint | None = None
    patient_position: PatientPosition | None = None
    ptv_margin_mm: float | None = None
    dof: Dof = Dof.SIX
    mode: Mode = Mode.TISSUE
    site: str = ""
    planning_series_uid: str | None = None  #: which series, when the upload holds several
    rtstruct: UploadedFiles | None = None  #: the RT Structure Set (also found inside planning)
    rtplan: UploadedFiles | None = None  #: the RT Plan (also found inside planning)


@dataclass(frozen=True)
class CourseCreated:
    course_id: int
    created: bool  #: False: the same course existed already and is returned


def create_course(ctx: ServiceContext, request: CourseRequest, actor: str) -> CourseCreated:
    ct_files, embedded = split_rt_files(request.planning)
    parsed = parse_series(ct_files, request.planning_series_uid)
    series_ops.check_patient(parsed, request.patient_id)
    package = read_package(request.rtstruct, request.rtplan, embedded)
    package_warnings = check_package(
        ct_identity(parsed),
        package.structure_set.structure_set if package.structure_set else None,
        package.plan.plan if package.plan else None,
    )
    if request.patient_position and request.patient_position != parsed.patient_position:
        raise UnprocessableError(
            f"patient_position is {request.patient_position} but the planning CT says "
            f"{parsed.patient_position}: check which is right (or leave the field out)"
        )
    margin = (
        ctx.settings.default_ptv_margin_mm
        if request.ptv_margin_mm is None
        else request.ptv_margin_mm
    )
    settings = CourseSettings(margin, request.dof, request.mode, request.site, request.isocenter)
    placed: list[str] = []
    with ctx.store.lock([parsed.content_sha256, *package_hashes(package)]):
        try:
            with ctx.writer() as session:
                course, created = place_course(
                    session, ctx.store, request.patient_id, parsed, settings, placed, actor
                )
                answer = (
                    CourseCreated(course.id, created=True)
                    if created
                    else _same_or_conflict(course, settings)
                )
                attach_package(session, ctx.store, course, package, package_warnings, placed, actor)
                session.commit()
                if answer.created:
                    prepare_planning_in_background(ctx, parsed.content_sha256)
                return answer
        except BaseException:
            with ctx.sessions() as session:
                series_ops.remove_unreferenced(ctx.store, session, placed)
            raise


def prepare_planning_in_background(ctx: ServiceContext, planning_sha256: str) -> None:
    """Have a worker prepare the new course's planning CT now, so the first fraction is as fast
    as the others: a free warm worker of the embedded pool, or a Celery worker (a message on the
    queue). It also writes the prepared file every other worker process loads. Best effort: when
    it does not happen (no free worker, broker refusing, a failure, logged) the first fraction
    prepares the planning CT; the course is created either way."""
    if ctx.jobs is None:
        return
    try:
        ctx.jobs.prepare_planning(planning_sha256)
    except Exception:
        log.exception("planning %s: not sent to be prepared", planning_sha256[:12])


def place_course(
    session: Session,
    store: ImageStore,
    patient_id: str,
    planning: ParsedSeries | ImageSeries,
    settings: CourseSettings,
    placed: list[str],
    actor: str,
) -> tuple[Course, bool]:
    """The patient's course on ``planning``: the stored one, or a new one (audited); created?

    A planning CT not stored yet is placed first (its hash goes onto ``placed``, see
    :func:`app.services.stored_series.get_or_place`). The caller holds the store lock and commits.
    """
    series = (
        planning
        if isinstance(planning, ImageSeries)
        else series_ops.get_or_place(session, store, planning, placed)
    )
    existing = repo.course_for_planning(session, patient_id, series.id)
    if existing is not None:
        return existing, False
    iso = settings.isocenter
    course = Course(
        patient_id=patient_id,
        planning_series_id=series.id,
        isocenter_x_mm=None if iso is None else iso.x_mm,
        isocenter_y_mm=None if iso is None else iso.y_mm,
        isocenter_z_mm=None if iso is None else iso.z_mm,
        patient_position=series.patient_position,
        ptv_margin_mm=settings.ptv_margin_mm,
        dof=settings.dof,
        mode=settings.mode,
        site=settings.site,
        created_by=actor,
    )
    session.add(course)
    session.flush()
    repo.record_audit(
        session,
        actor=actor,
        action="course_created",
        entity="course",
        entity_id=course.id,
        detail={
            "patient_id": course.patient_id,
            "planning_sha256": series.content_sha256,
            "ptv_margin_mm": settings.ptv_margin_mm,
            "dof": int(settings.dof),
            "mode": settings.mode.value,
            "site": settings.site,
        },
    )
    return course, True


def _same_or_conflict(existing: Course, settings: CourseSettings) -> CourseCreated:
    wanted = (
        settings.isocenter,
        settings.ptv_margin_mm,
        settings.dof,
        settings.mode,
        settings.site,
    )
    stored = (
        existing.isocenter,
        existing.ptv_margin_mm,
        existing.dof,
        existing.mode,
        existing.site,
    )
    if wanted != stored:
        raise ConflictError(
            f"patient {existing.patient_id!r} already has course {existing.id} with this planning "
            "CT and different settings; use course_id "
            f"{existing.id}, or ask the physicist to change that course"
        )
    return CourseCreated(existing.id, created=False)


@dataclass(frozen=True)
class CourseChanges:
    """Settings a physicist or physician may change; None leaves a setting as it is."""

    ptv_margin_mm: float | None = None
    dof: Dof | None = None
    mode: Mode | None = None
    site: str | None = None
    isocenter: LpsPoint | None = None
    machine_profile_name: str | None = None  #: a stored profile's name (checked)
    rotation_axis: LpsPoint | None = None  #: a point of the bore axis, planning LPS mm
    match_structure: str | None = None  #: "" clears it
    match_margin_mm: float | None = None
    prv_margin_mm: float | None = None
    serial_oar_names: tuple[str, ...] | None = None


def update_course(ctx: ServiceContext, course_id: int, changes: CourseChanges, actor: str) -> None:
    """Change a course's settings (audited with the values before and after)."""
    with ctx.writer() as session:
        course = repo.course_by_id(session, course_id)
        if course is None:
            raise NotFoundError(f"course {course_id} does not exist")
        before = _settings(course)
        if changes.ptv_margin_mm is not None:
            course.ptv_margin_mm = changes.ptv_margin_mm
        if changes.dof is not None:
            course.dof = Dof(changes.dof)
        if changes.mode is not None:
            course.mode = changes.mode
        if changes.site is not None:
            course.site = changes.site
        if changes.isocenter is not None:
            course.isocenter_x_mm = changes.isocenter.x_mm
            course.isocenter_y_mm = changes.isocenter.y_mm
            course.isocenter_z_mm = changes.isocenter.z_mm
        if changes.machine_profile_name is not None:
            machines.get_profile(session, changes.machine_profile_name)  # 404 names the known
            course.machine_profile_name = changes.machine_profile_name
        if changes.rotation_axis is not None:
            course.rotation_axis_x_mm = changes.rotation_axis.x_mm
            course.rotation_axis_y_mm = changes.rotation_axis.y_mm
            course.rotation_axis_z_mm = changes.rotation_axis.z_mm
        if changes.match_structure is not None:
            course.match_structure = changes.match_structure.strip() or None
        if changes.match_margin_mm is not None:
            course.match_margin_mm = changes.match_margin_mm
        if changes.prv_margin_mm is not None:
            course.prv_margin_mm = changes.prv_margin_mm
        if changes.serial_oar_names is not None:
            course.serial_oar_names = ",".join(n.strip() for n in changes.serial_oar_names)
        after = _settings(course)
        if after != before:
            repo.record_audit(
                session,
                actor=actor,
                action="course_updated",
                entity="course",
                entity_id=course.id,
                detail={"before": before, "after": after},
            )
        session.commit()


def _settings(course: Course) -> dict[str, object]:
    return {
        "ptv_margin_mm": course.ptv_margin_mm,
        "dof": course.dof,
        "mode": course.mode,
        "site": course.site,
        "isocenter_lps_mm": [course.isocenter_x_mm, course.isocenter_y_mm, course.isocenter_z_mm],
        "machine_profile": course.machine_profile_name,
        "rotation_axis_lps_mm": [
            course.rotation_axis_x_mm,
            course.rotation_axis_y_mm,
            course.rotation_axis_z_mm,
        ],
        "match_structure": course.match_structure,
        "match_margin_mm": course.match_margin_mm,
        "prv_margin_mm": course.prv_margin_mm,
        "serial_oar_names": course.serial_oar_names,
    }


def put_rt_object(
    ctx: ServiceContext, course_id: int, kind: PlanningKind, uploaded: UploadedFiles, actor: str
) -> None:
    """An RT Structure Set or RT Plan sent later for an existing course: checked against its
    planning CT (and current structure set), stored, made current, audited."""
    package = read_package(
        uploaded if kind is PlanningKind.RTSTRUCT else None,
        uploaded if kind is PlanningKind.RTPLAN else None,
    )
    with ctx.sessions() as session:
        course = repo.course_by_id(session, course_id)
        if course is None:
            raise NotFoundError(f"course {course_id} does not exist")
        warnings = check_for_course(session, ctx.store, course, package)
    placed: list[str] = []
    with ctx.store.lock(package_hashes(package)):
        try:
            with ctx.writer() as session:
                course = repo.course_by_id(session, course_id)
                assert course is not None
                attach_package(session, ctx.store, course, package, warnings, placed, actor)
                session.commit()
        except BaseException:
            with ctx.sessions() as session:
                series_ops.remove_unreferenced(ctx.store, session, placed)
            raise

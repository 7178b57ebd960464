"""Receiving a fraction: idempotent on the MVCT, reusing a stored planning CT, all or nothing.

:func:`receive_fraction` runs in a worker thread of the web process (or the DICOM receiver's). It
takes files already saved (:mod:`app.services.ingest`), answers at once if this MVCT is
already a fraction, reads and checks the series with the core's reader (422 with its words on
anything wrong), then — holding the
store locks of the new series — places their files, writes the series, course, fraction, job and
audit rows in one transaction, and removes the placed files again if that transaction fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.context import ServiceContext
from app.db import repository as repo
from app.db.models import Course, Fraction, ImageSeries, Job
from app.db.models_planning import PlanningKind
from app.errors import ConflictError, UnprocessableError
from app.services import machines
from app.services import stored_series as series_ops
from app.services.courses import CourseSettings, place_course
from app.services.ingest import ParsedSeries, UploadedFiles, parse_series
from app.services.patient_identity import (
    PatientIdentity,
    check_has_patient_id,
    check_same_patient,
)
from app.services.planning import (
    PackageIn,
    attach_package,
    check_for_course,
    check_package,
    ct_identity,
    current,
    decide_fraction_isocenter,
    package_hashes,
    read_package,
    split_rt_files,
)
from registration.compatibility import SeriesExtent
from registration.couch import Dof
from registration.geometry import LpsPoint
from registration.planning_package import IsocenterSource
from registration.result import Mode

DEFAULT_DOF = Dof.SIX
DEFAULT_MODE = Mode.TISSUE


@dataclass(frozen=True)
class FractionRequest:
    patient_id: str
    mvct: UploadedFiles
    planning: UploadedFiles | None = None
    course_id: int | None = None
    isocenter: LpsPoint | None = None
    fraction_number: int | None = None
    #: this MVCT is a repeat or verification image of ``fraction_number`` (which must exist)
    repeat_image: bool = False
    dof: Dof | None = None
    mode: Mode | None = None
    mvct_series_uid: str | None = None  #: which series, when the upload holds several
    planning_series_uid: str | None = None
    #: a verification scan of this fraction (taken after its couch move): same course and
    #: fraction number, its registration is the residual set-up error
    verifies_fraction_id: int | None = None
    rtstruct: UploadedFiles | None = None  #: the RT Structure Set (also found inside planning)
    rtplan: UploadedFiles | None = None  #: the RT Plan (also found inside planning)


@dataclass(frozen=True)
class Received:
    fraction_id: int
    job_id: int
    created: bool  #: False: this MVCT was already a fraction, which is returned


@dataclass(frozen=True)
class _Planning:
    """The planning CT of the request: an existing course, a stored series or a new one."""

    course: Course | None
    stored: ImageSeries | None
    parsed: ParsedSeries | None
    package: PackageIn = field(default_factory=PackageIn)
    package_warnings: tuple[str, ...] = ()

    def extent(self) -> SeriesExtent:
        if self.parsed is not None:
            return self.parsed.extent
        return series_ops.extent_of_row(self._row())

    def identity(self) -> PatientIdentity:
        if self.parsed is not None:
            return series_ops.identity_of_parsed(self.parsed)
        return series_ops.identity_of_row("planning CT", self._row())

    def series_instance_uid(self) -> str:
        if self.parsed is not None:
            return self.parsed.series_instance_uid
        return self._row().series_instance_uid

    def _row(self) -> ImageSeries:
        row = self.course.planning_series if self.course is not None else self.stored
        assert row is not None
        return row


def receive_fraction(ctx: ServiceContext, request: FractionRequest, actor: str) -> Received:
    if request.course_id is not None and request.planning:
        raise UnprocessableError(
            "send either the planning CT (field 'planning') or an existing course ('course_id'), "
            "not both"
        )
    if request.course_id is None and not request.planning:
        raise UnprocessableError(
            "send the planning CT (field 'planning') or the id of an existing course "
            "(field 'course_id')"
        )
    existing = _existing(ctx, request.mvct.content_sha256, request.patient_id)
    if existing is not None:
        return existing
    mvct = parse_series(request.mvct, request.mvct_series_uid)
    series_ops.check_patient(mvct, request.patient_id)
    existing = _existing(ctx, mvct.content_sha256, request.patient_id)
    if existing is not None:
        return existing
    planning = _resolve_planning(ctx, request)
    if planning.series_instance_uid() == mvct.series_instance_uid:
        raise UnprocessableError(
            f"the MVCT and the planning CT are the same series ({mvct.series_instance_uid}): "
            "send today's MVCT in 'mvct' and the planning CT in 'planning'"
        )
    series_ops.check_compatible(mvct.extent, planning.extent())
    check_same_patient(series_ops.identity_of_parsed(mvct), planning.identity())
    try:
        return _store(ctx, request, mvct, planning, actor)
    except IntegrityError:
        # a concurrent request (another process) stored the same thing first
        existing = _existing(ctx, mvct.content_sha256, request.patient_id)
        if existing is not None:
            return existing
        return _store(ctx, request, mvct, planning, actor)


def _existing(ctx: ServiceContext, mvct_sha256: str, patient_id: str) -> Received | None:
    with ctx.sessions() as session:
        fraction = repo.fraction_for_mvct_hash(session, mvct_sha256)
        if fraction is None:
            return None
        if fraction.patient_id != patient_id:
            raise ConflictError(
                f"this MVCT is already stored as fraction {fraction.id} of patient ID "
                f"{fraction.patient_id!r}, not {patient_id!r}: check the patient"
            )
        return Received(fraction.id, fraction.job.id, created=False)


def _resolve_planning(ctx: ServiceContext, request: FractionRequest) -> _Planning:
    if request.course_id is not None:
        with ctx.sessions() as session:
            course = repo.course_by_id(session, request.course_id)
            if course is None:
                raise UnprocessableError(
                    f"course {request.course_id} does not exist; create it first "
                    "(POST /api/v1/courses) or send the planning CT instead"
                )
            if course.patient_id != request.patient_id:
                raise UnprocessableError(
                    f"course {course.id} belongs to patient ID {course.patient_id!r}, not "
                    f"{request.patient_id!r}: check the patient and the course"
                )
            package = read_package(request.rtstruct, request.rtplan)
            warnings = check_for_course(session, ctx.store, course, package)
            return _Planning(course, None, None, package, warnings)
    assert request.planning
    upload, embedded = split_rt_files(request.planning)
    package = read_package(request.rtstruct, request.rtplan, embedded)
    with ctx.sessions() as session:
        stored = repo.series_by_hash(session, upload.content_sha256)
    if stored is not None:  # seen before: nothing to read, nothing to store
        _check_stored_patient(stored, request.patient_id)
        return _Planning(None, stored, None, package, _check(stored, package))
    parsed = parse_series(upload, request.planning_series_uid)
    series_ops.check_patient(parsed, request.patient_id)
    return _Planning(None, None, parsed, package, _check(parsed, package))


def _check(ct: ParsedSeries | ImageSeries, package: PackageIn) -> tuple[str, ...]:
    return check_package(
        ct_identity(ct),
        package.structure_set.structure_set if package.structure_set else None,
        package.plan.plan if package.plan else None,
    )


def _check_stored_patient(stored: ImageSeries, patient_id: str) -> None:
    check_has_patient_id(series_ops.identity_of_row("planning CT", stored))
    if stored.patient_id != patient_id:
        raise UnprocessableError(
            f"the planning CT belongs to patient ID {stored.patient_id!r} but patient_id is "
            f"{patient_id!r}: check that the right patient and images were sent"
        )


def _store(
    ctx: ServiceContext,
    request: FractionRequest,
    mvct: ParsedSeries,
    planning: _Planning,
    actor: str,
) -> Received:
    hashes = [mvct.content_sha256, *package_hashes(planning.package)]
    if planning.parsed is not None:
        hashes.append(planning.parsed.content_sha256)
    placed: list[str] = []
    with ctx.store.lock(hashes):
        try:
            with ctx.writer() as session:
                existing = repo.fraction_for_mvct_hash(session, mvct.content_sha256)
                if existing is not None:
                    return Received(existing.id, existing.job.id, created=False)
                course = _course(session, ctx, request, planning, placed, actor)
                attach_package(
                    session,
                    ctx.store,
                    course,
                    planning.package,
                    planning.package_warnings,
                    placed,
                    actor,
                )
                mvct_row = series_ops.get_or_place(session, ctx.store, mvct, placed)
                station = machines.station_name_of(mvct.files[0][0]) if mvct.files else ""
                fraction = _add_fraction(session, request, course, mvct_row, station, actor)
                job = Job(fraction_id=fraction.id)
                session.add(job)
                session.flush()
                repo.record_audit(
                    session,
                    actor=actor,
                    action="received",
                    entity="fraction",
                    entity_id=fraction.id,
                    detail={
                        "patient_id": request.patient_id,
                        "course_id": course.id,
                        "fraction_number": fraction.fraction_number,
                        "mvct_series_instance_uid": mvct.series_instance_uid,
                        "mvct_sha256": mvct.content_sha256,
                        "job_id": job.id,
                        "station_name": fraction.station_name,
                        "machine_profile": (fraction.machine_profile or {}).get("name"),
                        "dof": int(fraction.dof),
                        "verifies_fraction_id": fraction.verifies_fraction_id,
                    },
                )
                session.commit()
                return Received(fraction.id, job.id, created=True)
        except BaseException:
            with ctx.sessions() as session:
                series_ops.remove_unreferenced(ctx.store, session, placed)
            raise


def _course(
    session: Session,
    ctx: ServiceContext,
    request: FractionRequest,
    planning: _Planning,
    placed: list[str],
    actor: str,
) -> Course:
    if planning.course is not None:
        course = repo.course_by_id(session, planning.course.id)
        assert course is not None
        return course
    source = planning.parsed if planning.parsed is not None else planning.stored
    assert source is not None
    settings = CourseSettings(
        ptv_margin_mm=ctx.settings.default_ptv_margin_mm,
        dof=request.dof or DEFAULT_DOF,
        mode=request.mode or DEFAULT_MODE,
        isocenter=request.isocenter,
    )
    course, _ = place_course(
        session, ctx.store, request.patient_id, source, settings, placed, actor
    )
    return course


def _add_fraction(
    session: Session,
    request: FractionRequest,
    course: Course,
    mvct_row: ImageSeries,
    station_name: str,
    actor: str,
) -> Fraction:
    rtstruct = current(session, course.id, PlanningKind.RTSTRUCT)
    rtplan = current(session, course.id, PlanningKind.RTPLAN)
    decision = decide_fraction_isocenter(course, rtplan, request.isocenter, mvct_row)
    # at the MVCT centre the engine finds the centre itself (the image's, not the bounding box's)
    iso = None if decision.source is IsocenterSource.MVCT_CENTRE else decision.point
    number, image = _number(session, request, course)
    profile = machines.profile_for_fraction(session, course, station_name)
    fraction = Fraction(
        course_id=course.id,
        patient_id=request.patient_id,
        mvct_series_id=mvct_row.id,
        fraction_number=number,
        image_number=image,
        dof=machines.fraction_dof(request.dof, profile, course),
        mode=request.mode or course.mode,
        isocenter_x_mm=None if iso is None else iso.x_mm,
        isocenter_y_mm=None if iso is None else iso.y_mm,
        isocenter_z_mm=None if iso is None else iso.z_mm,
        isocenter_source=decision.source.value,
        rtstruct_id=None if rtstruct is None else rtstruct.id,
        rtplan_id=None if rtplan is None else rtplan.id,
        planning_warnings=list(decision.warnings),
        created_by=actor,
        station_name=station_name,
        machine_profile=None if profile is None else profile.to_dict(),
        verifies_fraction_id=request.verifies_fraction_id,
    )
    session.add(fraction)
    session.flush()
    return fraction


def _number(session: Session, request: FractionRequest, course: Course) -> tuple[int, int]:
    """(fraction number, image number): the next number, the one asked for if it is free, or
    the next image of an existing number when the request says it is a repeat image."""
    number = request.fraction_number
    if number is None:
        if request.repeat_image:
            raise UnprocessableError("repeat_image needs the fraction_number it repeats")
        return repo.next_fraction_number(session, course.id), 1
    first = repo.fraction_by_number(session, course.id, number)
    if request.repeat_image:
        if first is None:
            raise UnprocessableError(
                f"course {course.id} has no fraction number {number} to repeat: send it "
                "without repeat_image"
            )
        return number, repo.next_image_number(session, course.id, number)
    if first is not None:
        raise ConflictError(
            f"course {course.id} already has fraction number {number} (fraction {first.id}): "
            "send another number, none (the next one is given), or repeat_image=true for a "
            "repeat or verification image of that fraction"
        )
    return number, 1

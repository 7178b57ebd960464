"""A complete received series through the service's own ingest path (the HTTP API's functions).

The inbox files are handed over where they lie (:func:`app.services.ingest.files_in_place`):
the only copy made is the image store's.

* planning CT → :func:`app.services.courses.create_course`: the existing course when the
  patient already has one for this Series Instance UID (even if a peer re-encoded the files),
  else a new course
  with the PTV margin, DOF, mode and site of the patient's previous course (the defaults for a
  first course);
* MVCT → :func:`app.services.fractions.receive_fraction` (the code path of
  ``POST /api/v1/fractions``:
  idempotent on the images, same storage, same audit) against the patient's most recent course,
  and its job is queued as that route queues it;
* an MVCT whose series description matches ``dicom_verification_pattern`` → a verification
  scan (:mod:`app.services.verification`) of the patient's latest fraction received the same
  UTC day; refused with words when there is none (never counted as a fraction of its own).

Refusals are the ingest path's own exceptions, with its words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.context import ServiceContext
from app.db import repository as repo
from app.db.models import Course, ImageSeries, utcnow
from app.db.models_dicom import DicomSeries
from app.dicom import DicomError
from app.errors import ConflictError
from app.services.courses import CourseRequest, CourseSettings, create_course
from app.services.fractions import FractionRequest, receive_fraction
from app.services.ingest import UploadedFiles, files_in_place
from app.services.verification import fraction_to_verify, receive_verification
from registration.couch import Dof
from registration.result import Mode

#: (SOP Instance UID, inbox file) of each instance of a series
SeriesFiles = Sequence[tuple[str, Path]]


def planning_course(
    ctx: ServiceContext, series: DicomSeries, files: SeriesFiles, actor: str
) -> int:
    """The id of the course whose planning CT ``series`` is (made if needed)."""
    with ctx.sessions() as session:
        same = course_of_planning(session, series.patient_id, series.series_instance_uid)
        new = new_course_settings(session, series.patient_id, ctx.settings.default_ptv_margin_mm)
    if same is not None:
        return same.id
    request = CourseRequest(
        patient_id=series.patient_id,
        planning=inbox_files(files, "planning CT"),
        planning_series_uid=series.series_instance_uid,
        ptv_margin_mm=new.settings.ptv_margin_mm,
        dof=new.settings.dof,
        mode=new.settings.mode,
        site=new.settings.site,
    )
    try:
        return create_course(ctx, request, actor).course_id
    except ConflictError:  # these very files are a course already, with other settings
        with ctx.sessions() as session:
            course = course_of_planning(session, series.patient_id, series.series_instance_uid)
        if course is None:
            raise
        return course.id


@dataclass(frozen=True)
class NewCourseSettings:
    settings: CourseSettings
    from_course_id: int | None  #: the course they are taken from; None: a first course


def new_course_settings(
    session: Session, patient_id: str, default_ptv_margin_mm: float
) -> NewCourseSettings:
    """What a planning CT received by DICOM gives its new course: the PTV margin, DOF, mode and
    site of the patient's latest course, else a first course's defaults."""
    previous = latest_course(session, patient_id)
    if previous is None:
        return NewCourseSettings(CourseSettings(default_ptv_margin_mm), None)
    settings = CourseSettings(
        previous.ptv_margin_mm, Dof(previous.dof), Mode(previous.mode), previous.site
    )
    return NewCourseSettings(settings, previous.id)


def mvct_fraction(
    ctx: ServiceContext,
    series: DicomSeries,
    files: SeriesFiles,
    actor: str,
    *,
    course_id: int | None = None,
) -> tuple[int, int] | None:
    """``(course id, fraction id)`` of the MVCT ``series`` in course ``course_id`` (default: the
    patient's latest); None while the patient has no course. Without ``course_id``, a series
    matching ``dicom_verification_pattern`` is a verification scan instead."""
    if course_id is None and _is_verification(ctx, series):
        return _verification(ctx, series, files, actor)
    if course_id is None:
        with ctx.sessions() as session:
            course = latest_course(session, series.patient_id)
        if course is None:
            return None
        course_id = course.id
    request = FractionRequest(
        patient_id=series.patient_id,
        mvct=inbox_files(files, "MVCT"),
        course_id=course_id,
        mvct_series_uid=series.series_instance_uid,
    )
    received = receive_fraction(ctx, request, actor)
    if received.created and ctx.jobs is not None:  # exactly as POST /api/v1/fractions does
        ctx.jobs.enqueue(received.job_id)
    return course_id, received.fraction_id


def _is_verification(ctx: ServiceContext, series: DicomSeries) -> bool:
    pattern = ctx.settings.dicom_verification_pattern
    if not pattern:
        return False
    try:
        return re.search(pattern, series.series_description, re.IGNORECASE) is not None
    except re.error as exc:
        raise DicomError(
            f"MVCT_GUIDE_DICOM_VERIFICATION_PATTERN {pattern!r} is not a regular expression "
            f"({exc}); ask the physicist to fix the setting"
        ) from None


def _verification(
    ctx: ServiceContext, series: DicomSeries, files: SeriesFiles, actor: str
) -> tuple[int, int]:
    with ctx.sessions() as session:
        verified = fraction_to_verify(session, series.patient_id, utcnow())
        if verified is None:
            raise DicomError(
                f"series {series.series_description!r} is a verification scan (it matches "
                f"{ctx.settings.dicom_verification_pattern!r}) but patient "
                f"{series.patient_id!r} has no fraction received today to verify; send the "
                "daily MVCT first, or post it to /api/v1/fractions/<id>/verification"
            )
        course_id, fraction_id = verified.course_id, verified.id
    received = receive_verification(ctx, fraction_id, inbox_files(files, "MVCT"), actor)
    if received.created and ctx.jobs is not None:
        ctx.jobs.enqueue(received.job_id)
    return course_id, received.fraction_id


def latest_course(session: Session, patient_id: str) -> Course | None:
    courses = repo.courses(session, patient_id)
    return courses[-1] if courses else None


def course_of_planning(session: Session, patient_id: str, series_uid: str) -> Course | None:
    query = (
        select(Course)
        .join(ImageSeries, Course.planning_series_id == ImageSeries.id)
        .where(Course.patient_id == patient_id, ImageSeries.series_instance_uid == series_uid)
        .order_by(Course.id.desc())
    )
    return session.scalars(query).first()


def inbox_files(files: SeriesFiles, label: str) -> UploadedFiles:
    """The series' inbox files as saved files for the use cases (hashed in place, not copied)."""
    for name, path in files:
        if not path.is_file():
            raise DicomError(
                f"the received file of instance {name} is missing from the DICOM inbox "
                f"({path}); send the series again"
            )
    try:
        return files_in_place(label, [path for _, path in files])
    except FileNotFoundError as exc:
        raise DicomError(
            f"a received file is missing from the DICOM inbox ({exc.filename}); "
            "send the series again"
        ) from None

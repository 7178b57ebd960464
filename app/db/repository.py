"""The one place that knows how rows are queried and written. Callers own the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.db.models import (
    ApiKey,
    AuditEvent,
    Course,
    Fraction,
    ImageSeries,
    Job,
    JobStatus,
    RegistrationResult,
    User,
    utcnow,
)
from app.db.models_planning import PlanningObject


def record_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: int | str,
    detail: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEvent(
            actor=actor, action=action, entity=entity, entity_id=str(entity_id), detail=detail or {}
        )
    )


# --- accounts -------------------------------------------------------------------------------


def user_by_username(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def api_key_by_digest(session: Session, digest: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.key_sha256 == digest))


def api_key_by_name(session: Session, name: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.name == name))


# --- images, courses, fractions -------------------------------------------------------------


def series_by_hash(session: Session, content_sha256: str) -> ImageSeries | None:
    return session.scalar(select(ImageSeries).where(ImageSeries.content_sha256 == content_sha256))


def all_series_hashes(session: Session) -> set[str]:
    """Every image-store key a row points at: CT series and planning-package files."""
    series = set(session.scalars(select(ImageSeries.content_sha256)))
    return series | set(session.scalars(select(PlanningObject.content_sha256)))


def course_by_id(session: Session, course_id: int) -> Course | None:
    return session.get(Course, course_id)


def course_for_planning(
    session: Session, patient_id: str, planning_series_id: int
) -> Course | None:
    return session.scalar(
        select(Course).where(
            Course.patient_id == patient_id, Course.planning_series_id == planning_series_id
        )
    )


def courses(session: Session, patient_id: str | None = None) -> Sequence[Course]:
    query = select(Course).order_by(Course.id)
    if patient_id is not None:
        query = query.where(Course.patient_id == patient_id)
    return session.scalars(query).unique().all()


def fraction_by_id(session: Session, fraction_id: int) -> Fraction | None:
    return session.get(Fraction, fraction_id)


def fraction_for_mvct(session: Session, mvct_series_id: int) -> Fraction | None:
    return session.scalar(select(Fraction).where(Fraction.mvct_series_id == mvct_series_id))


def fractions_of_patient(session: Session, patient_id: str) -> Sequence[Fraction]:
    """The patient's fractions, oldest first; verification scans are not fractions here."""
    query = (
        select(Fraction)
        .where(Fraction.patient_id == patient_id, Fraction.verifies_fraction_id.is_(None))
        .order_by(Fraction.created_at, Fraction.id)
    )
    return session.scalars(query).unique().all()


def verification_of(session: Session, fraction_id: int) -> Fraction | None:
    """The latest verification scan of ``fraction_id`` (None: there is none)."""
    query = (
        select(Fraction)
        .where(Fraction.verifies_fraction_id == fraction_id)
        .order_by(Fraction.id.desc())
        .limit(1)
    )
    return session.scalars(query).unique().first()


def verifications_of(session: Session, fraction_ids: Sequence[int]) -> dict[int, Fraction]:
    """The latest verification scan of each of ``fraction_ids`` that has one."""
    if not fraction_ids:
        return {}
    query = (
        select(Fraction)
        .where(Fraction.verifies_fraction_id.in_(list(fraction_ids)))
        .order_by(Fraction.id)
    )
    found: dict[int, Fraction] = {}
    for scan in session.scalars(query).unique():
        assert scan.verifies_fraction_id is not None
        found[scan.verifies_fraction_id] = scan
    return found


def next_fraction_number(session: Session, course_id: int) -> int:
    """max + 1 within the course, race-free: on PostgreSQL the course row is locked until the
    transaction ends, so a concurrent numbering waits and then sees this fraction (SQLite writers
    hold the database write lock from BEGIN). The unique index refuses a duplicate regardless."""
    session.execute(select(Course.id).where(Course.id == course_id).with_for_update())
    highest = session.scalar(
        select(func.max(Fraction.fraction_number)).where(Fraction.course_id == course_id)
    )
    return int(highest or 0) + 1


def fraction_by_number(session: Session, course_id: int, number: int) -> Fraction | None:
    """The first image of fraction ``number`` of the course."""
    query = (
        select(Fraction)
        .where(Fraction.course_id == course_id, Fraction.fraction_number == number)
        .order_by(Fraction.image_number)
        .limit(1)
    )
    return session.scalar(query)


def next_image_number(session: Session, course_id: int, number: int) -> int:
    """The next image of fraction ``number`` (a repeat or verification MVCT); race-free like
    :func:`next_fraction_number`."""
    session.execute(select(Course.id).where(Course.id == course_id).with_for_update())
    highest = session.scalar(
        select(func.max(Fraction.image_number)).where(
            Fraction.course_id == course_id, Fraction.fraction_number == number
        )
    )
    return int(highest or 0) + 1


# --- jobs -----------------------------------------------------------------------------------


def job_ids_with_status(session: Session, statuses: Sequence[JobStatus]) -> list[int]:
    query = select(Job.id).where(Job.status.in_([s.value for s in statuses])).order_by(Job.id)
    return list(session.scalars(query))


def claim_job(session: Session, job_id: int, now: datetime | None = None) -> int | None:
    """Compare-and-set queued → running; the new attempt number, or None if not queued."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED.value)
        .values(
            status=JobStatus.RUNNING.value,
            attempts=Job.attempts + 1,
            started_at=now or utcnow(),
        )
        .returning(Job.attempts)
    )
    row = result.first()
    return None if row is None else int(row[0])


def finish_job(
    session: Session,
    job_id: int,
    attempt: int,
    status: JobStatus,
    *,
    error: str | None = None,
    error_status: int | None = None,
) -> bool:
    """Compare-and-set running (this attempt) → done/failed; False if someone else moved it."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING.value, Job.attempts == attempt)
        .values(status=status.value, finished_at=utcnow(), error=error, error_status=error_status)
        .returning(Job.id)
    )
    return result.first() is not None


def requeue_job(session: Session, job_id: int, attempt: int) -> bool:
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING.value, Job.attempts == attempt)
        .values(status=JobStatus.QUEUED.value)
        .returning(Job.id)
    )
    return result.first() is not None


def result_for_fraction(session: Session, fraction_id: int) -> RegistrationResult | None:
    return session.scalar(
        select(RegistrationResult).where(RegistrationResult.fraction_id == fraction_id)
    )


def fraction_for_mvct_hash(session: Session, content_sha256: str) -> Fraction | None:
    query = (
        select(Fraction)
        .join(ImageSeries, Fraction.mvct_series_id == ImageSeries.id)
        .where(ImageSeries.content_sha256 == content_sha256)
    )
    return session.scalar(query)


def series_is_referenced(session: Session, content_sha256: str) -> bool:
    if series_by_hash(session, content_sha256) is not None:
        return True
    query = select(PlanningObject.id).where(PlanningObject.content_sha256 == content_sha256)
    return session.scalar(query.limit(1)) is not None

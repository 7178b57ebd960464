"""Daily imaging QA: a phantom course per machine, each morning's scan judged against the offset.

A physicist marks a course whose planning CT is the QA phantom's reference CT as the QA course of
one machine (DICOM StationName, as the worklist groups fractions), with its positioning tolerance
(default AAPM TG-142, Klein et al. 2009, Table V: 2 mm, 1 mm for a machine that treats SRS/SBRT;
rotations 1°, a project choice — see :mod:`registration.qa`). Each morning the phantom is set up
at the isocentre, the couch is moved by a known offset and the MVCT is posted like a fraction of
that course, with ``qa_expected_offset``.

``qa_expected_offset`` (API field, page field) is **the couch offset APPLIED to the phantom**:
the couch motion the therapist made after aligning the phantom, IEC 61217 table axes, mm and
degrees. The registration should then report the correction that undoes it; that expected
correction is :func:`registration.qa.expected_correction_for_couch_offset` (for translations the
negated offset). Judged per axis: error = correction found − correction expected, pass when
|error| ≤ tolerance.

Each scan's verdict and the control charts: :mod:`app.services.qa_verdict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import repository as repo
from app.db.models import Fraction, User, utcnow
from app.db.models_anatomy import AckKind, FractionFigures, QaCourse, QaOffset
from app.errors import ConflictError, NotFoundError, UnprocessableError
from app.services.anatomy import AckView, latest_acknowledgements, record_acknowledgement
from app.services.qa_verdict import (
    BASELINE_SCANS,
    QaDay,
    figures_from_dict,
    image_baseline,
    judge,
    tolerance_of,
)
from registration.couch import CouchCorrection
from registration.qa import QaTolerance
from registration.qa_phantom import QaImageFigures

MAX_OFFSET_MM, MAX_OFFSET_DEG = 50.0, 5.0


def create_qa_course(
    session: Session,
    course_id: int,
    machine: str,
    treats_srs_sbrt: bool,
    actor: str,
    translation_tolerance_mm: float | None = None,
    rotation_tolerance_deg: float | None = None,
) -> QaCourse:
    """Make ``course_id`` (its planning CT: the phantom's reference CT) the QA course of
    ``machine``; tolerances default to TG-142 for the machine. Audited."""
    course = repo.course_by_id(session, course_id)
    if course is None:
        raise NotFoundError(f"course {course_id} does not exist: create it with the phantom CT")
    machine = machine.strip()
    if not machine:
        raise UnprocessableError("name the machine (its DICOM StationName, as on the worklist)")
    if session.scalar(select(QaCourse).where(QaCourse.machine == machine)) is not None:
        raise ConflictError(f"machine {machine!r} already has a QA course")
    if session.scalar(select(QaCourse).where(QaCourse.course_id == course_id)) is not None:
        raise ConflictError(f"course {course_id} is already a QA course")
    default = QaTolerance.for_machine(treats_srs_sbrt)
    qa = QaCourse(
        course_id=course_id,
        machine=machine,
        treats_srs_sbrt=treats_srs_sbrt,
        translation_tolerance_mm=translation_tolerance_mm or default.translation_mm,
        rotation_tolerance_deg=rotation_tolerance_deg or default.rotation_deg,
        created_by=actor,
    )
    tolerance_of(qa)  # refuses a non-positive tolerance
    session.add(qa)
    session.flush()
    repo.record_audit(
        session,
        actor=actor,
        action="qa_course",
        entity="course",
        entity_id=course_id,
        detail={
            "machine": machine,
            "treats_srs_sbrt": treats_srs_sbrt,
            "translation_tolerance_mm": qa.translation_tolerance_mm,
            "rotation_tolerance_deg": qa.rotation_tolerance_deg,
        },
    )
    session.commit()
    return qa


def set_baseline(
    session: Session, machine: str, figures: QaImageFigures | None, actor: str
) -> QaCourse:
    """Set the machine's image baseline (commissioning values), or None: the mean of the first
    :data:`BASELINE_SCANS` scans again. Audited."""
    qa = qa_course_for_machine(session, machine)
    if qa is None:
        raise NotFoundError(f"machine {machine!r} has no QA course")
    qa.baseline = None if figures is None else figures.to_dict()
    repo.record_audit(
        session,
        actor=actor,
        action="qa_baseline",
        entity="course",
        entity_id=qa.course_id,
        detail={"machine": machine, "baseline": qa.baseline},
    )
    session.commit()
    return qa


def qa_course_of(session: Session, course_id: int) -> QaCourse | None:
    return session.scalar(select(QaCourse).where(QaCourse.course_id == course_id))


def qa_course_for_machine(session: Session, machine: str) -> QaCourse | None:
    return session.scalar(select(QaCourse).where(QaCourse.machine == machine))


def check_offset(applied: CouchCorrection) -> None:
    for axis, value in applied.as_dict().items():
        limit = MAX_OFFSET_MM if axis.endswith("_mm") else MAX_OFFSET_DEG
        if not abs(value) <= limit:
            raise UnprocessableError(
                f"qa_expected_offset {axis} = {value:g} is outside ±{limit:g}: enter the couch "
                "offset applied to the phantom in mm and degrees"
            )


def record_offset(session: Session, fraction_id: int, applied: CouchCorrection, actor: str) -> None:
    """Store the couch offset applied to the phantom for a QA scan (latest counts); audited."""
    fraction = repo.fraction_by_id(session, fraction_id)
    if fraction is None:
        raise NotFoundError(f"fraction {fraction_id} does not exist")
    if qa_course_of(session, fraction.course_id) is None:
        raise UnprocessableError(
            f"fraction {fraction_id} is not a QA scan (course {fraction.course_id} is not a QA "
            "course): qa_expected_offset is only for QA phantom scans"
        )
    check_offset(applied)
    session.add(QaOffset(fraction_id=fraction_id, entered_by=actor, **applied.as_dict()))
    repo.record_audit(
        session,
        actor=actor,
        action="qa_offset",
        entity="fraction",
        entity_id=fraction_id,
        detail={"couch_offset_applied": applied.as_dict()},
    )
    session.commit()


def acknowledge_qa(
    session: Session, fraction_id: int, user: User, note: str, actor: str
) -> AckView:
    fraction = repo.fraction_by_id(session, fraction_id)
    if fraction is None or qa_course_of(session, fraction.course_id) is None:
        raise NotFoundError(f"fraction {fraction_id} is not a QA scan")
    return record_acknowledgement(session, fraction_id, AckKind.QA, user, note, actor)


def machine_days(
    session: Session, machine: str, since: datetime | None = None, until: datetime | None = None
) -> list[QaDay]:
    """The machine's QA scans, oldest first, judged."""
    qa = qa_course_for_machine(session, machine)
    if qa is None:
        raise NotFoundError(f"machine {machine!r} has no QA course")
    return _days(session, qa, since, until)


def course_days(session: Session, qa: QaCourse) -> list[QaDay]:
    """Every scan of the QA course, oldest first, judged."""
    return _days(session, qa, None, None)


def _days(
    session: Session, qa: QaCourse, since: datetime | None, until: datetime | None
) -> list[QaDay]:
    query = select(Fraction).where(Fraction.course_id == qa.course_id)
    fractions = list(
        session.scalars(query.order_by(Fraction.created_at, Fraction.id)).unique().all()
    )
    ids = [f.id for f in fractions]
    offsets = _latest_offsets(session, ids)
    phantoms = _phantom_figures(session, ids)
    measured = [i for i in ids if i in phantoms]
    in_baseline = set() if qa.baseline is not None else set(measured[:BASELINE_SCANS])
    baseline = image_baseline(qa, [phantoms[i] for i in measured])
    acks = latest_acknowledgements(session, ids, AckKind.QA)
    days = []
    for fraction in fractions:
        if since is not None and fraction.created_at < since:
            continue
        if until is not None and fraction.created_at >= until:
            continue
        days.append(
            judge(
                fraction,
                qa,
                offsets.get(fraction.id),
                phantoms.get(fraction.id),
                None if fraction.id in in_baseline else baseline,
                acks.get(fraction.id),
            )
        )
    return days


def fraction_qa(session: Session, fraction: Fraction) -> QaDay | None:
    """The QA verdict of a fraction of a QA course (None: a patient fraction)."""
    qa = qa_course_of(session, fraction.course_id)
    if qa is None:
        return None
    for day in _days(session, qa, None, None):
        if day.fraction_id == fraction.id:
            return day
    return None  # pragma: no cover - the fraction belongs to the course


def unacknowledged_failures(session: Session, days_back: int = 60) -> dict[str, list[QaDay]]:
    """Per machine, its failed QA scans nobody has acknowledged (the worklist banner)."""
    since = utcnow() - timedelta(days=days_back)
    failures: dict[str, list[QaDay]] = {}
    for qa in session.scalars(select(QaCourse).order_by(QaCourse.machine)).all():
        open_days = [d for d in _days(session, qa, since, None) if d.needs_acknowledgement]
        if open_days:
            failures[qa.machine] = open_days
    return failures


def _latest_offsets(session: Session, ids: Sequence[int]) -> dict[int, CouchCorrection]:
    if not ids:
        return {}
    rows = session.scalars(
        select(QaOffset).where(QaOffset.fraction_id.in_(ids)).order_by(QaOffset.id)
    ).all()
    return {r.fraction_id: r.applied for r in rows}


def _phantom_figures(session: Session, ids: Sequence[int]) -> dict[int, QaImageFigures]:
    if not ids:
        return {}
    rows = session.scalars(
        select(FractionFigures).where(
            FractionFigures.fraction_id.in_(ids), FractionFigures.phantom.is_not(None)
        )
    ).all()
    return {r.fraction_id: figures_from_dict(r.phantom or {}) for r in rows}


def all_qa_courses(session: Session) -> list[QaCourse]:
    return list(session.scalars(select(QaCourse).order_by(QaCourse.machine)).all())


def local_midnight(day: date) -> datetime:
    """The clinic's midnight starting ``day`` (local time, aware)."""
    return datetime.combine(day, time()).astimezone()

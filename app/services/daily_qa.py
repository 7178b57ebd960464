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

Verdicts of a QA scan: ``passed``; ``failed`` (an axis or an image figure out of tolerance — the
worklist of the machine shows a banner until a physicist acknowledges it); ``needs review`` (the
registration was not trusted: a phantom match at 4–6 mm slices is often marked "not converged"
although correct; a physicist looks at the images — it is not a failed day; scan with fine
pitch); ``no offset`` (enter the offset applied); ``awaiting registration`` / ``registration
failed``. Image figures (noise, uniformity, insert numbers) are compared with the course's
baseline: the one the physicist set, else the mean of the first :data:`BASELINE_SCANS` measured
scans (those scans are the baseline and are not judged on their figures).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import repository as repo
from app.db.models import Fraction, JobStatus, User, utcnow
from app.db.models_anatomy import AckKind, FractionFigures, QaCourse, QaOffset
from app.errors import ConflictError, NotFoundError, UnprocessableError
from app.services.anatomy import AckView, latest_acknowledgements, record_acknowledgement
from registration.couch import CouchCorrection
from registration.qa import (
    AXES,
    ControlChart,
    QaImageBaseline,
    QaImageCheck,
    QaPositioningResult,
    QaTolerance,
    control_chart,
    evaluate_image,
    evaluate_positioning,
    expected_correction_for_couch_offset,
)
from registration.qa_phantom import QaImageFigures

BASELINE_SCANS = 3
PASSED, FAILED, NEEDS_REVIEW = "passed", "failed", "needs review"
NO_OFFSET, WAITING, REG_FAILED = "no offset", "awaiting registration", "registration failed"
MAX_OFFSET_MM, MAX_OFFSET_DEG = 50.0, 5.0


@dataclass(frozen=True)
class QaDay:
    """One QA scan of a machine, judged."""

    fraction_id: int
    machine: str
    scanned_at: datetime
    verdict: str
    applied_offset: CouchCorrection | None
    positioning: QaPositioningResult | None
    image: tuple[QaImageCheck, ...] = ()
    image_figures: QaImageFigures | None = None
    trusted: bool | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)
    acknowledged: AckView | None = None

    @property
    def needs_acknowledgement(self) -> bool:
        return self.verdict == FAILED and self.acknowledged is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "fraction_id": self.fraction_id,
            "machine": self.machine,
            "scanned_at": self.scanned_at.isoformat(timespec="seconds"),
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "qa_expected_offset": None
            if self.applied_offset is None
            else self.applied_offset.as_dict(),
            "positioning": None if self.positioning is None else self.positioning.to_dict(),
            "image_figures": None if self.image_figures is None else self.image_figures.to_dict(),
            "image_checks": [
                {
                    "figure": c.figure,
                    "value": round(c.value, 2),
                    "baseline": round(c.baseline, 2),
                    "limit": round(c.limit, 2),
                    "passed": c.passed,
                }
                for c in self.image
            ],
            "trusted": self.trusted,
            "acknowledged": None if self.acknowledged is None else self.acknowledged.to_dict(),
        }


def tolerance_of(qa: QaCourse) -> QaTolerance:
    return QaTolerance(qa.translation_tolerance_mm, qa.rotation_tolerance_deg)


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
    baseline = _baseline(qa, [phantoms[i] for i in measured])
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


def judge(
    fraction: Fraction,
    qa: QaCourse,
    applied: CouchCorrection | None,
    figures: QaImageFigures | None,
    baseline: QaImageBaseline | None,
    acknowledged: AckView | None = None,
) -> QaDay:
    """One QA scan's verdict (module docstring)."""
    day = QaDay(
        fraction_id=fraction.id,
        machine=qa.machine,
        scanned_at=fraction.created_at,
        verdict=WAITING,
        applied_offset=applied,
        positioning=None,
        image_figures=figures,
        acknowledged=acknowledged,
    )
    if fraction.job.status != JobStatus.DONE.value or fraction.result is None:
        if fraction.job.status == JobStatus.FAILED.value:
            return replace(day, verdict=REG_FAILED, reasons=(fraction.job.error or "",))
        return day
    result = fraction.result.engine_result
    checks = () if figures is None or baseline is None else evaluate_image(figures, baseline)
    day = replace(day, image=checks, trusted=result.trusted)
    if applied is None:
        return replace(
            day, verdict=NO_OFFSET, reasons=("enter the couch offset applied to the phantom",)
        )
    expected = expected_correction_for_couch_offset(
        applied, result.isocenter_lps_mm, result.patient_position
    )
    positioning = evaluate_positioning(result.couch_correction_6dof, expected, tolerance_of(qa))
    reasons = [
        f"{a.axis}: found {a.found:+.2f}, expected {a.expected:+.2f} (error {a.error:+.2f}, "
        f"tolerance ±{a.tolerance:g})"
        for a in positioning.axes
        if not a.passed
    ]
    reasons += [
        f"{c.figure} {c.value:.1f} against baseline {c.baseline:.1f} (limit {c.limit:.1f})"
        for c in checks
        if not c.passed
    ]
    if not result.trusted:
        verdict = NEEDS_REVIEW
        reasons.insert(0, "the registration is not trusted: check the match on the images")
    else:
        verdict = PASSED if not reasons else FAILED
    return replace(day, verdict=verdict, positioning=positioning, reasons=tuple(reasons))


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


def charts(days: Sequence[QaDay], qa: QaCourse) -> dict[str, tuple[list[QaDay], ControlChart]]:
    """Per axis, the control chart of the error (found − expected) over the judged days."""
    judged = [d for d in days if d.positioning is not None]
    tolerance = tolerance_of(qa)
    result = {}
    for index, axis in enumerate(AXES):
        if not judged:
            break
        limit = tolerance.translation_mm if axis.endswith("_mm") else tolerance.rotation_deg
        values = [d.positioning.axes[index].error for d in judged]  # type: ignore[union-attr]
        result[axis] = (judged, control_chart(values, limit))
    return result


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


def figures_from_dict(data: dict[str, Any]) -> QaImageFigures:
    return QaImageFigures(
        noise_hu=float(data["noise_hu"]),
        uniformity_hu=float(data["uniformity_hu"]),
        inserts=tuple((str(k), float(v)) for k, v in data["inserts"].items()),
    )


def _baseline(qa: QaCourse, measured: list[QaImageFigures]) -> QaImageBaseline | None:
    if qa.baseline is not None:
        figures = figures_from_dict(qa.baseline)
        return QaImageBaseline(figures.noise_hu, figures.uniformity_hu, figures.inserts)
    if len(measured) < BASELINE_SCANS:
        return None
    return QaImageBaseline.from_figures(measured[:BASELINE_SCANS])


def all_qa_courses(session: Session) -> list[QaCourse]:
    return list(session.scalars(select(QaCourse).order_by(QaCourse.machine)).all())


def local_midnight(day: date) -> datetime:
    """The clinic's midnight starting ``day`` (local time, aware)."""
    return datetime.combine(day, time()).astimezone()

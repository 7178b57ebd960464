"""The anatomy-change alert of a course: figures the job stored, judged with the course's levels.

The registration job measures each registered fraction (:func:`app.worker.measure_after_match`) and
stores the figures (``fraction_figures``). The alert is judged here, when read, by the core rule
:func:`registration.anatomy_alert.evaluate_anatomy_alert` over the course's fractions in fraction
order up to the one judged — so a change of the course's alert levels applies to every fraction at
once and the stored figures never need rewriting. The alert is advice for a re-planning review: it
never changes the registration's ``trusted``, and acknowledging it (a physician, with a note,
audited) only records that it was read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import repository as repo
from app.db.models import Fraction, User, utcnow
from app.db.models_anatomy import AckKind, Acknowledgement, AnatomySettingsRow, FractionFigures
from app.errors import NotFoundError, UnprocessableError
from registration.anatomy import AnatomyFigures
from registration.anatomy_alert import AnatomyAlert, AnatomyAlertSettings, evaluate_anatomy_alert
from registration.errors import InputError

ALERT_WARNING = "anatomy changed: consider re-planning"
MAX_NOTE = 2000


@dataclass(frozen=True)
class AckView:
    printed_name: str
    note: str
    at_iso: str

    def to_dict(self) -> dict[str, str]:
        return {"by": self.printed_name, "note": self.note, "at": self.at_iso}


@dataclass(frozen=True)
class AnatomyEntry:
    """One measured fraction of a course with the alert judged on it."""

    fraction_id: int
    fraction_number: int
    figures: AnatomyFigures
    alert: AnatomyAlert
    acknowledged: AckView | None

    @property
    def flagged(self) -> bool:
        """An alert nobody has acknowledged yet."""
        return self.alert.alert and self.acknowledged is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "figures": self.figures.to_dict(),
            "alert": self.alert.to_dict(),
            "warning": ALERT_WARNING if self.alert.alert else None,
            "acknowledged": None if self.acknowledged is None else self.acknowledged.to_dict(),
        }


def course_settings(session: Session, course_id: int) -> AnatomyAlertSettings:
    row = session.scalar(
        select(AnatomySettingsRow).where(AnatomySettingsRow.course_id == course_id)
    )
    return AnatomyAlertSettings() if row is None else AnatomyAlertSettings(**row.settings)


def course_anatomy(session: Session, course_id: int) -> list[AnatomyEntry]:
    """Every measured fraction of the course, oldest first, each with its alert."""
    rows = session.execute(
        select(Fraction.id, Fraction.fraction_number, FractionFigures.anatomy)
        .join(FractionFigures, FractionFigures.fraction_id == Fraction.id)
        .where(Fraction.course_id == course_id, FractionFigures.anatomy.is_not(None))
        .order_by(Fraction.fraction_number, Fraction.id)
    ).all()
    settings = course_settings(session, course_id)
    acks = latest_acknowledgements(session, [r[0] for r in rows], AckKind.ANATOMY)
    figures = [AnatomyFigures.from_dict(r[2]) for r in rows]
    return [
        AnatomyEntry(
            fraction_id=r[0],
            fraction_number=r[1],
            figures=figures[i],
            alert=evaluate_anatomy_alert(figures[: i + 1], settings),
            acknowledged=acks.get(r[0]),
        )
        for i, r in enumerate(rows)
    ]


def fraction_anatomy(session: Session, fraction: Fraction) -> AnatomyEntry | None:
    for entry in course_anatomy(session, fraction.course_id):
        if entry.fraction_id == fraction.id:
            return entry
    return None


def figures_note(session: Session, fraction_id: int) -> str | None:
    """Why the job measured nothing on this fraction (None: measured, or not registered yet)."""
    row = session.scalar(select(FractionFigures).where(FractionFigures.fraction_id == fraction_id))
    return None if row is None else row.note


def latest_acknowledgements(
    session: Session, fraction_ids: Sequence[int], kind: AckKind
) -> dict[int, AckView]:
    if not fraction_ids:
        return {}
    rows = session.scalars(
        select(Acknowledgement)
        .where(Acknowledgement.fraction_id.in_(fraction_ids), Acknowledgement.kind == kind.value)
        .order_by(Acknowledgement.id)
    ).all()
    return {
        r.fraction_id: AckView(r.printed_name, r.note, r.at.isoformat(timespec="seconds"))
        for r in rows
    }


def set_course_settings(
    session: Session, course_id: int, values: dict[str, Any], actor: str
) -> AnatomyAlertSettings:
    """Replace the course's alert levels (omitted ones: the core's defaults); audited."""
    if repo.course_by_id(session, course_id) is None:
        raise NotFoundError(f"course {course_id} does not exist")
    try:
        settings = AnatomyAlertSettings(**values)
    except InputError as exc:
        raise UnprocessableError(str(exc)) from None
    row = session.scalar(
        select(AnatomySettingsRow).where(AnatomySettingsRow.course_id == course_id)
    )
    if row is None:
        row = AnatomySettingsRow(course_id=course_id, settings={}, updated_by=actor)
        session.add(row)
    row.settings = settings.to_dict()
    row.updated_by = actor
    row.updated_at = utcnow()
    repo.record_audit(
        session,
        actor=actor,
        action="anatomy_settings",
        entity="course",
        entity_id=course_id,
        detail=settings.to_dict(),
    )
    session.commit()
    return settings


def acknowledge_anatomy(
    session: Session, fraction_id: int, user: User, note: str, actor: str
) -> AckView:
    """A physician read the fraction's anatomy-change alert (the caller checks the role)."""
    fraction = repo.fraction_by_id(session, fraction_id)
    if fraction is None:
        raise NotFoundError(f"fraction {fraction_id} does not exist")
    entry = fraction_anatomy(session, fraction)
    if entry is None or not entry.alert.alert:
        raise UnprocessableError(
            f"fraction {fraction_id} has no anatomy-change alert to acknowledge"
        )
    return record_acknowledgement(session, fraction_id, AckKind.ANATOMY, user, note, actor)


def record_acknowledgement(
    session: Session, fraction_id: int, kind: AckKind, user: User, note: str, actor: str
) -> AckView:
    """Record that ``user`` read the alert (anatomy) or the failed QA scan (qa), with a note;
    append-only and audited."""
    note = note.strip()
    if not note:
        raise UnprocessableError("write a note: what was decided (e.g. re-plan requested)")
    if len(note) > MAX_NOTE:
        raise UnprocessableError(f"the note is {len(note)} characters long; at most {MAX_NOTE}")
    row = Acknowledgement(
        fraction_id=fraction_id,
        kind=kind.value,
        user_id=user.id,
        printed_name=user.full_name or user.username,
        note=note,
    )
    session.add(row)
    session.flush()
    repo.record_audit(
        session,
        actor=actor,
        action=f"acknowledged_{kind.value}",
        entity="fraction",
        entity_id=fraction_id,
        detail={"note": note, "printed_name": row.printed_name},
    )
    session.commit()
    return AckView(row.printed_name, row.note, row.at.isoformat(timespec="seconds"))

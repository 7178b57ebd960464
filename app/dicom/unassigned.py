"""Received series held for a physicist: hold, list, and the three decisions (all audited).

A series is held (:func:`hold`) when no rule identified it as a planning CT or an MVCT, or when
it is a new planning CT of a patient who already has a course and it was not sent by a planning
CT sender (``MVCT_GUIDE_DICOM_PLANNING_AES``): a diagnostic CT of the same Patient ID must never
become the reference of the next MVCT by itself. The physicist then

* assigns it as the planning CT of a new course of its patient (:func:`assign_planning`),
* assigns it as an MVCT of one of the patient's courses (:func:`assign_mvct`), or
* discards it (:func:`discard`, with a reason; the series is not used, its files leave the inbox
  after ``dicom_inbox_retention_days``).

The JSON API (:mod:`app.api.dicom_unassigned`) and the physicists' page (``/dicom/held``,
:mod:`app.web.routes_held`) both decide through :func:`assign` and :func:`discard`, which check
the decision's inputs (:class:`UnprocessableError` in words that name the value).

Each decision is taken once: the held row is closed with compare-and-set, so two people deciding
at the same moment get one success and one 409 naming the first decision. Assigning runs the
service's own ingest path (:mod:`app.dicom.series_ingest`), with its checks and its refusals.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.context import ServiceContext
from app.db import repository as repo
from app.db.models import utcnow
from app.db.models_dicom import (
    DicomInstance,
    DicomSeries,
    DicomUnassigned,
    SeriesKind,
    SeriesState,
)
from app.dicom import DicomError
from app.dicom import series_ingest as ingest
from app.dicom.acceptance import MODALITY_OF
from app.dicom.inbox import Inbox
from app.errors import ConflictError, NotFoundError, UnprocessableError

log = logging.getLogger(__name__)

#: the longest note (why the series is what it is assigned as, or why it is discarded)
MAX_NOTE_CHARS = 1000
#: the decisions of :func:`assign`
ASSIGN_AS = ("planning", "mvct")


def hold(session: Session, series: DicomSeries, reason: str, actor: str) -> None:
    """Hold ``series`` for a physicist, in the caller's transaction (the caller commits)."""
    series.state = SeriesState.IGNORED.value
    series.error = None
    series.updated_at = utcnow()
    session.add(DicomUnassigned(series_id=series.id, patient_id=series.patient_id, reason=reason))
    repo.record_audit(
        session,
        actor=actor,
        action="dicom_series_unassigned",
        entity="dicom_series",
        entity_id=series.id,
        detail={
            "series_instance_uid": series.series_instance_uid,
            "patient_id": series.patient_id,
            "reason": reason,
        },
    )
    log.warning(
        "DICOM series %s of patient %r held for a physicist (GET /api/v1/dicom/unassigned): %s",
        series.series_instance_uid,
        series.patient_id,
        reason,
    )


@dataclass(frozen=True)
class HeldSeries:
    series_id: int
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    series_description: str
    modality: str  #: of the instances' SOP class (CT: the grouper holds only image series)
    source: str
    sender: str
    n_instances: int
    extent_mm: float
    reason: str
    received_at: datetime  #: when its last instance arrived
    held_since: datetime
    patient_course_ids: tuple[int, ...]


def count_held(session: Session) -> int:
    """How many series wait for a decision (one indexed count: cheap enough for every page)."""
    waiting = select(func.count()).where(DicomUnassigned.resolution.is_(None))
    return int(session.scalar(waiting) or 0)


def list_held(session: Session) -> list[HeldSeries]:
    """Every series still waiting for a decision, oldest first."""
    rows = session.execute(
        select(DicomUnassigned, DicomSeries)
        .join(DicomSeries, DicomSeries.id == DicomUnassigned.series_id)
        .where(DicomUnassigned.resolution.is_(None))
        .order_by(DicomUnassigned.id)
    ).all()
    held = []
    for row, series in rows:
        low, high, sop_class, received_at = session.execute(
            select(
                func.min(DicomInstance.position_z_mm),
                func.max(DicomInstance.position_z_mm),
                func.min(DicomInstance.sop_class_uid),
                func.max(DicomInstance.received_at),
            ).where(DicomInstance.series_id == series.id)
        ).one()
        held.append(
            HeldSeries(
                series_id=series.id,
                series_instance_uid=series.series_instance_uid,
                study_instance_uid=series.study_instance_uid,
                patient_id=series.patient_id,
                series_description=series.series_description,
                modality=MODALITY_OF.get(sop_class or "", "unknown"),
                source=series.source,
                sender=series.sender,
                n_instances=series.n_instances,
                extent_mm=0.0 if low is None or high is None else float(high - low),
                reason=row.reason,
                received_at=received_at or series.created_at,
                held_since=row.created_at,
                patient_course_ids=tuple(c.id for c in repo.courses(session, series.patient_id)),
            )
        )
    return held


@dataclass(frozen=True)
class DecidedSeries:
    """A held series once decided: what, by whom, when, why."""

    series_id: int
    patient_id: str
    series_description: str
    resolution: str  #: "planning", "mvct" or "discarded"
    resolved_by: str
    resolved_at: datetime
    note: str
    course_id: int | None
    fraction_id: int | None


def recent_decisions(session: Session, limit: int = 10) -> list[DecidedSeries]:
    """The ``limit`` latest decisions, newest first."""
    rows = session.execute(
        select(DicomUnassigned, DicomSeries)
        .join(DicomSeries, DicomSeries.id == DicomUnassigned.series_id)
        .where(DicomUnassigned.resolution.is_not(None))
        .order_by(DicomUnassigned.resolved_at.desc(), DicomUnassigned.id.desc())
        .limit(limit)
    ).all()
    return [
        DecidedSeries(
            series_id=series.id,
            patient_id=series.patient_id,
            series_description=series.series_description,
            resolution=row.resolution or "",
            resolved_by=row.resolved_by or "",
            resolved_at=row.resolved_at or row.created_at,
            note=row.note or "",
            course_id=series.course_id,
            fraction_id=series.fraction_id,
        )
        for row, series in rows
    ]


@dataclass(frozen=True)
class Decision:
    series_id: int
    resolution: str  #: "planning", "mvct" or "discarded"
    course_id: int | None = None
    fraction_id: int | None = None


def assign(
    ctx: ServiceContext,
    inbox: Inbox,
    series_id: int,
    as_: str,
    course_id: int | None,
    actor: str,
    note: str,
) -> Decision:
    """The held series becomes the planning CT of a new course (``as_`` "planning", no
    ``course_id``) or an MVCT of course ``course_id`` (``as_`` "mvct"); ``note`` is optional."""
    if as_ not in ASSIGN_AS:
        raise UnprocessableError(f"assign as {as_!r}? choose planning (a new course) or mvct")
    if as_ == "mvct" and course_id is None:
        raise UnprocessableError("choose the course this MVCT belongs to (course_id)")
    if as_ == "planning" and course_id is not None:
        raise UnprocessableError(
            f"a planning CT makes a new course: course_id {course_id} cannot be given with it"
        )
    note = _checked_note(note, required=False)
    if course_id is None:
        return assign_planning(ctx, inbox, series_id, actor, note)
    return assign_mvct(ctx, inbox, series_id, course_id, actor, note)


def _checked_note(note: str, *, required: bool) -> str:
    if required and not note.strip():
        raise UnprocessableError("say why the series is discarded (reason): it is audited")
    if len(note) > MAX_NOTE_CHARS:
        raise UnprocessableError(
            f"the reason has {len(note)} characters: keep it within {MAX_NOTE_CHARS}"
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in note):
        raise UnprocessableError("the reason contains control characters (line breaks, tabs)")
    return note


def assign_planning(
    ctx: ServiceContext, inbox: Inbox, series_id: int, actor: str, note: str
) -> Decision:
    """The held series becomes the planning CT of a new course of its patient (or of the course
    that already has this very series)."""
    series = _held(ctx, series_id)
    try:
        course_id = ingest.planning_course(ctx, series, _files(ctx, inbox, series_id), actor)
    except DicomError as exc:  # an inbox file is gone: the physicist must have it sent again
        raise UnprocessableError(str(exc)) from None
    decision = Decision(series_id, "planning", course_id=course_id)
    _close(ctx, series, decision, SeriesKind.PLANNING, actor, note)
    return decision


def assign_mvct(
    ctx: ServiceContext, inbox: Inbox, series_id: int, course_id: int, actor: str, note: str
) -> Decision:
    """The held series becomes an MVCT (a queued fraction) of course ``course_id``."""
    series = _held(ctx, series_id)
    files = _files(ctx, inbox, series_id)
    try:
        made = ingest.mvct_fraction(ctx, series, files, actor, course_id=course_id)
    except DicomError as exc:
        raise UnprocessableError(str(exc)) from None
    assert made is not None  # a named course exists or the ingest path refused it
    decision = Decision(series_id, "mvct", course_id=made[0], fraction_id=made[1])
    _close(ctx, series, decision, SeriesKind.MVCT, actor, note)
    return decision


def discard(ctx: ServiceContext, series_id: int, actor: str, note: str) -> Decision:
    """The held series is not used (its instances stay in the inbox, counted, until the
    retention sweep removes them: :mod:`app.dicom.inbox_retention`); ``note``, the reason, is
    required."""
    note = _checked_note(note, required=True)
    series = _held(ctx, series_id)
    decision = Decision(series_id, "discarded")
    _close(ctx, series, decision, None, actor, note)
    return decision


def _held(ctx: ServiceContext, series_id: int) -> DicomSeries:
    with ctx.sessions() as session:
        row = session.scalar(select(DicomUnassigned).where(DicomUnassigned.series_id == series_id))
        if row is None:
            raise NotFoundError(f"series {series_id} is not a held (unassigned) DICOM series")
        if row.resolution is not None:
            raise ConflictError(_already(series_id, row))
        return session.get_one(DicomSeries, series_id)


def _already(series_id: int, row: DicomUnassigned) -> str:
    return (
        f"series {series_id} was already decided: {row.resolution} by {row.resolved_by} at "
        f"{row.resolved_at:%Y-%m-%d %H:%M} UTC; reload the list"
    )


def _files(ctx: ServiceContext, inbox: Inbox, series_id: int) -> ingest.SeriesFiles:
    with ctx.sessions() as session:
        instances = session.scalars(
            select(DicomInstance)
            .where(DicomInstance.series_id == series_id)
            .order_by(DicomInstance.id)
        ).all()
    return [(i.sop_instance_uid, inbox.path_for(i.file_sha256)) for i in instances]


def _close(
    ctx: ServiceContext,
    series: DicomSeries,
    decision: Decision,
    kind: SeriesKind | None,
    actor: str,
    note: str,
) -> None:
    with ctx.writer() as session:
        closed = session.execute(
            update(DicomUnassigned)
            .where(DicomUnassigned.series_id == series.id, DicomUnassigned.resolution.is_(None))
            .values(
                resolution=decision.resolution,
                resolved_by=actor[:100],
                resolved_at=utcnow(),
                note=note,
            )
        )
        if closed.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            row = session.scalar(
                select(DicomUnassigned).where(DicomUnassigned.series_id == series.id)
            )
            assert row is not None
            raise ConflictError(_already(series.id, row))
        row_series = session.get_one(DicomSeries, series.id)
        if kind is not None:
            row_series.kind = kind.value
            row_series.state = SeriesState.DONE.value
            row_series.rule = f"assigned by {actor}"[:200]
            row_series.course_id = decision.course_id
            row_series.fraction_id = decision.fraction_id
        row_series.updated_at = utcnow()
        repo.record_audit(
            session,
            actor=actor,
            action="dicom_series_discarded" if kind is None else "dicom_series_assigned",
            entity="dicom_series",
            entity_id=series.id,
            detail={
                "series_instance_uid": series.series_instance_uid,
                "patient_id": series.patient_id,
                "resolution": decision.resolution,
                "course_id": decision.course_id,
                "fraction_id": decision.fraction_id,
                "note": note,
            },
        )
        session.commit()
    log.info(
        "DICOM series %s: %s by %s (course %s, fraction %s)",
        series.series_instance_uid,
        decision.resolution,
        actor,
        decision.course_id,
        decision.fraction_id,
    )

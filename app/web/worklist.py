"""The worklist: one day's fractions by machine and patient, with what the physician must see."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import signoff_repo
from app.db.models import Fraction, JobStatus
from app.db.models_signoff import Decision, Signoff
from app.services import anatomy, daily_qa
from app.services.qa_verdict import QaDay
from app.services.signoff import LARGE_SHIFT_MM
from app.storage import ImageStore

UNKNOWN_MACHINE = "machine not recorded"


@dataclass(frozen=True)
class Row:
    fraction_id: int
    patient_id: str
    machine: str
    fraction_number: int
    received_local: str
    status: str  #: awaiting registration, registration failed, awaiting review, approved, ...
    status_class: str  #: for the page's colours: waiting, failed, review, approved, rejected
    correction: dict[str, float] | None
    dof: int
    margin_mm: float
    beyond_margin: bool
    needs_override: bool
    trusted: bool | None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    signed_by: str = ""
    anatomy_alert: bool = False  #: "anatomy changed: consider re-planning"
    anatomy_acknowledged: bool = False
    anatomy_messages: tuple[str, ...] = ()
    qa_verdict: str | None = None  #: a QA phantom scan's verdict (None: a patient fraction)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """Local midnight to midnight, as aware datetimes (the clinic's day, not UTC's)."""
    start = datetime.combine(day, time()).astimezone()
    return start, datetime.combine(day + timedelta(days=1), time()).astimezone()


def today() -> date:
    return datetime.now().astimezone().date()


def fractions_of_day(db: Session, day: date) -> Sequence[Fraction]:
    start, end = day_bounds(day)
    query = (
        select(Fraction)
        .where(
            Fraction.created_at >= start,
            Fraction.created_at < end,
            Fraction.verifies_fraction_id.is_(None),  # verification scans are not signed off
        )
        .order_by(Fraction.created_at, Fraction.id)
    )
    return db.scalars(query).unique().all()


def rows_of_day(db: Session, store: ImageStore, day: date) -> list[Row]:
    fractions = fractions_of_day(db, day)
    signed = signoff_repo.latest_signoffs(db, [f.id for f in fractions])
    alerts = _Alerts(db)
    rows = [alerts.add(_row(f, signed.get(f.id), store), f) for f in fractions]
    return sorted(rows, key=lambda r: (r.machine, r.patient_id, r.fraction_number, r.fraction_id))


def _row(fraction: Fraction, signoff: Signoff | None, store: ImageStore) -> Row:
    result = fraction.result
    proposed = None if result is None else result.couch_correction
    if signoff is not None:
        signed = signoff_repo.signed_correction(signoff)
        proposed = proposed if signed is None else signed
    correction = None if proposed is None else proposed.as_dict()
    margin = fraction.course.ptv_margin_mm
    status, css = _status(fraction, signoff)
    return Row(
        fraction_id=fraction.id,
        patient_id=fraction.patient_id,
        machine=machine_of(store, fraction.mvct_series.content_sha256),
        fraction_number=fraction.fraction_number,
        received_local=fraction.created_at.astimezone().strftime("%H:%M"),
        status=status,
        status_class=css,
        correction=correction,
        dof=fraction.dof,
        margin_mm=margin,
        beyond_margin=proposed is not None and proposed.exceeds_margin(margin),
        needs_override=proposed is not None and proposed.max_abs_translation_mm() >= LARGE_SHIFT_MM,
        trusted=None if result is None else result.trusted,
        warnings=() if result is None else result.engine_result.warnings,
        signed_by="" if signoff is None else signoff.printed_name,
    )


class _Alerts:
    """The QA verdicts and anatomy alerts of the day's fractions, judged once per course."""

    def __init__(self, db: Session) -> None:
        self._db = db
        self._qa: dict[int, dict[int, QaDay] | None] = {}
        self._anatomy: dict[int, dict[int, anatomy.AnatomyEntry]] = {}

    def add(self, row: Row, fraction: Fraction) -> Row:
        course_id = fraction.course_id
        if course_id not in self._qa:
            qa = daily_qa.qa_course_of(self._db, course_id)
            days = None if qa is None else daily_qa.course_days(self._db, qa)
            self._qa[course_id] = None if days is None else {d.fraction_id: d for d in days}
        qa_days = self._qa[course_id]
        if qa_days is not None:
            day = qa_days.get(fraction.id)
            return row if day is None else replace(row, qa_verdict=day.verdict)
        if course_id not in self._anatomy:
            entries = anatomy.course_anatomy(self._db, course_id)
            self._anatomy[course_id] = {e.fraction_id: e for e in entries}
        entry = self._anatomy[course_id].get(fraction.id)
        if entry is None or not entry.alert.alert:
            return row
        return replace(
            row,
            anatomy_alert=True,
            anatomy_acknowledged=entry.acknowledged is not None,
            anatomy_messages=entry.alert.messages,
        )


def _status(fraction: Fraction, signoff: Signoff | None) -> tuple[str, str]:
    if signoff is not None:
        return {
            Decision.APPROVED.value: ("approved", "approved"),
            Decision.APPROVED_ADJUSTED.value: ("approved (adjusted)", "approved"),
            Decision.REJECTED.value: ("rejected", "rejected"),
        }[signoff.decision]
    job = fraction.job.status
    if job == JobStatus.FAILED.value:
        return "registration failed", "failed"
    if job == JobStatus.DONE.value:
        return "awaiting review", "review"
    return "awaiting registration", "waiting"


def machine_of(store: ImageStore, content_sha256: str) -> str:
    """The treatment machine that took the MVCT (DICOM StationName), read once per series."""
    files = store.series_files(content_sha256)
    return _station_name(str(files[0])) if files else UNKNOWN_MACHINE


@functools.lru_cache(maxsize=4096)
def _station_name(path: str) -> str:
    from pydicom import dcmread

    try:
        dataset = dcmread(Path(path), stop_before_pixels=True, specific_tags=["StationName"])
    except Exception:
        return UNKNOWN_MACHINE
    name = str(dataset.get("StationName", "") or "").strip()
    return name or UNKNOWN_MACHINE

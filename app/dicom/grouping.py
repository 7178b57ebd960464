"""From received instances to courses and fractions: group per series, wait, classify, ingest.

A series is **complete** when no association or STOW-RS request that sent it is still open and no
instance of it arrived for ``dicom_quiet_s`` seconds. The grouper then takes its instances
(``dicom_instances.series_id``) into a ``dicom_series`` row, decides what it is
(:mod:`app.dicom.rules`) and hands it to :mod:`app.dicom.series_ingest` — the functions behind
``POST /api/v1/courses`` and ``POST /api/v1/fractions``. Planning CTs completed together with
MVCTs go first.

A series no rule identifies, and a new planning CT of a patient who has a course that no planning
CT sender sent, is held for a physicist (:mod:`app.dicom.unassigned`; its row is ``ignored``).
An MVCT of a patient without a course waits (state ``waiting``) until a planning CT arrives.
Refusals of the ingest path leave the series ``failed`` with the same words (and in the audit
trail); sending more instances of a failed series tries again with all of them. Instances of a
series that was already used are kept and counted (``n_late``), never used silently.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.context import ServiceContext
from app.db import repository as repo
from app.db.models import utcnow
from app.db.models_dicom import DicomInstance, DicomSeries, SeriesKind, SeriesState
from app.dicom import DicomError, rt_ingest, unassigned
from app.dicom import series_ingest as ingest
from app.dicom.inbox import Inbox
from app.dicom.rules import SeriesFacts, SeriesRules, classify
from app.errors import ServiceError
from registration.errors import InputError

log = logging.getLogger(__name__)
#: how often an RT object whose course has not arrived yet is tried again
_RT_RETRY = timedelta(seconds=10)


# --- what is being received right now ------------------------------------------------------


class InFlight:
    """Series that an open association or STOW-RS request is still sending (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[object, set[str]] = {}

    def begin(self, key: object) -> None:
        with self._lock:
            self._open.setdefault(key, set())

    def add(self, key: object, series_uid: str) -> None:
        with self._lock:
            self._open.setdefault(key, set()).add(series_uid)

    def end(self, key: object) -> None:
        with self._lock:
            self._open.pop(key, None)

    def series(self) -> set[str]:
        with self._lock:
            return set().union(*self._open.values()) if self._open else set()


# --- the grouper ----------------------------------------------------------------------------


class SeriesGrouper:
    """One thread that turns complete series into courses and fractions (see module docstring)."""

    def __init__(
        self, ctx: ServiceContext, inbox: Inbox, rules: SeriesRules, in_flight: InFlight
    ) -> None:
        self._ctx = ctx
        self._inbox = inbox
        self._rules = rules
        self._in_flight = in_flight
        self._quiet = timedelta(seconds=ctx.settings.dicom_quiet_s)
        self._poll_s = max(0.1, min(1.0, ctx.settings.dicom_quiet_s / 2))
        self._wake = threading.Event()
        self._rt_tried: dict[int, datetime] = {}
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="mvct-guide-dicom", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping:
            try:
                self.run_once()
            except Exception:  # a database outage must not end the thread
                log.exception("DICOM grouping failed; trying again")
            self._wake.wait(self._poll_s)
            self._wake.clear()

    def run_once(self, now: datetime | None = None) -> int:
        """Take complete series and process what is pending; the number of series processed."""
        self._claim_complete(now or utcnow())
        self._release_waiting()
        with self._ctx.sessions() as session:
            pending = session.scalars(
                select(DicomSeries)
                .where(DicomSeries.state == SeriesState.PENDING.value)
                .order_by(DicomSeries.id)
            ).all()
        # planning CTs first, so that MVCTs completed with them find their course
        ordered = sorted(pending, key=lambda s: (s.kind != SeriesKind.PLANNING.value, s.id))
        planning_done = False
        for series in ordered:
            if self._stopping:
                break
            if series.kind != SeriesKind.PLANNING.value and not planning_done:
                planning_done = True
                self._retry_rt_objects()  # a new course: its RT objects before its MVCTs
            self._process(series.id)
        return len(ordered)

    def _retry_rt_objects(self) -> None:
        with self._ctx.sessions() as session:
            rows = session.scalars(
                select(DicomInstance)
                .where(
                    DicomInstance.series_id.is_(None),
                    DicomInstance.sop_class_uid.in_(list(rt_ingest.RT_SOP_CLASSES)),
                )
                .order_by(DicomInstance.id)
            ).all()
        self._rt_tried.clear()
        self._attach_rt_objects(rows, utcnow())

    # --- taking complete series ---------------------------------------------------------

    def _claim_complete(self, now: datetime) -> None:
        with self._ctx.sessions() as session:
            rows = session.scalars(
                select(DicomInstance)
                .where(DicomInstance.series_id.is_(None))
                .order_by(DicomInstance.id)
            ).all()
        rows = self._attach_rt_objects(rows, now)
        groups: dict[str, list[DicomInstance]] = defaultdict(list)
        for row in rows:
            groups[row.series_instance_uid].append(row)
        busy = self._in_flight.series()
        ready = {
            uid: members
            for uid, members in groups.items()
            if uid not in busy and max(m.received_at for m in members) <= now - self._quiet
        }
        if not ready:
            return
        with self._ctx.writer() as session:
            decisions = self._decide(session, ready)
            for uid, members in ready.items():
                self._take(session, uid, members, decisions.get(uid))
            session.commit()

    def _attach_rt_objects(
        self, rows: Sequence[DicomInstance], now: datetime
    ) -> list[DicomInstance]:
        """Attach received RT Structure Sets and Plans (:mod:`app.dicom.rt_ingest`); the rest.

        One whose course is not there yet is tried again every ``_RT_RETRY``."""
        rest = []
        for row in rows:
            if row.sop_class_uid not in rt_ingest.RT_SOP_CLASSES:
                rest.append(row)
                continue
            tried = self._rt_tried.get(row.id)
            if tried is not None and tried > now - _RT_RETRY:
                continue
            path = self._inbox.path_for(row.file_sha256)
            if rt_ingest.attach_received(self._ctx, row, path):
                self._rt_tried.pop(row.id, None)
            else:
                self._rt_tried[row.id] = now
        return rest

    def _decide(
        self, session: Session, ready: dict[str, list[DicomInstance]]
    ) -> dict[str, tuple[SeriesKind | None, str]]:
        """Kinds of the series that have no row yet (None: held for a physicist)."""
        known = set(
            session.scalars(
                select(DicomSeries.series_instance_uid).where(
                    DicomSeries.series_instance_uid.in_(list(ready))
                )
            )
        )
        return {
            uid: classify(_facts(members), self._rules)
            for uid, members in ready.items()
            if uid not in known
        }

    def _take(
        self,
        session: Session,
        uid: str,
        members: Sequence[DicomInstance],
        decision: tuple[SeriesKind | None, str] | None,
    ) -> None:
        series = session.scalar(select(DicomSeries).where(DicomSeries.series_instance_uid == uid))
        if series is None:
            assert decision is not None
            identified, reason = decision
            kind = SeriesKind.IGNORED if identified is None else identified
            first = members[0]
            series = DicomSeries(
                series_instance_uid=uid,
                study_instance_uid=first.study_instance_uid,
                patient_id=first.patient_id,
                series_description=first.series_description,
                source=first.source,
                sender=first.sender,
                kind=kind.value,
                rule=reason[:200],
                state=(
                    SeriesState.IGNORED if kind is SeriesKind.IGNORED else SeriesState.PENDING
                ).value,
                n_instances=0,
                n_late=0,
            )
            session.add(series)
            session.flush()
            log.info("DICOM series %s (%d instances): %s, %s", uid, len(members), kind, reason)
            if identified is None:
                unassigned.hold(session, series, reason, _actor(first))
        elif series.state == SeriesState.DONE.value:
            series.n_late += len(members)
            log.warning(
                "%d instance(s) of series %s arrived after it was used; kept, not used",
                len(members),
                uid,
            )
            repo.record_audit(
                session,
                actor=_actor(members[0]),
                action="dicom_late_instances",
                entity="dicom_series",
                entity_id=series.id,
                detail={"series_instance_uid": uid, "instances": len(members)},
            )
        elif series.state == SeriesState.FAILED.value:
            series.state = SeriesState.PENDING.value  # more instances: try again with all
            series.error = None
        for member in members:
            session.get_one(DicomInstance, member.id).series_id = series.id
        if series.state != SeriesState.DONE.value:
            series.n_instances += len(members)
        series.updated_at = utcnow()

    def _release_waiting(self) -> None:
        """MVCTs that waited for a course go again once their patient has one."""
        with self._ctx.writer() as session:
            waiting = session.scalars(
                select(DicomSeries).where(DicomSeries.state == SeriesState.WAITING.value)
            ).all()
            changed = False
            for series in waiting:
                if repo.courses(session, series.patient_id):
                    series.state = SeriesState.PENDING.value
                    changed = True
            if changed:
                session.commit()

    # --- ingest -------------------------------------------------------------------------

    def _process(self, series_id: int) -> None:
        with self._ctx.sessions() as session:
            series = session.get_one(DicomSeries, series_id)
            instances = session.scalars(
                select(DicomInstance)
                .where(DicomInstance.series_id == series_id)
                .order_by(DicomInstance.id)
            ).all()
        files = [(i.sop_instance_uid, self._inbox.path_for(i.file_sha256)) for i in instances]
        actor = f"{series.source}:{series.sender}"
        try:
            if not series.patient_id:
                raise DicomError(
                    "the series has no Patient ID; send it again with the patient's ID"
                )
            if series.kind == SeriesKind.PLANNING.value:
                if self._hold_new_planning_ct(series, actor):
                    return
                course_id = ingest.planning_course(self._ctx, series, files, actor)
                self._finish(series_id, SeriesState.DONE, course_id=course_id)
                return
            made = ingest.mvct_fraction(self._ctx, series, files, actor)
            if made is None:
                message = (
                    f"no planning CT has been received for patient {series.patient_id!r} yet; "
                    "the MVCT is kept and registered as soon as the planning CT arrives"
                )
                log.warning("DICOM series %s: %s", series.series_instance_uid, message)
                self._finish(series_id, SeriesState.WAITING, error=message)
                return
            course_id, fraction_id = made
            self._finish(series_id, SeriesState.DONE, course_id=course_id, fraction_id=fraction_id)
            log.info(
                "DICOM series %s became fraction %d of course %d",
                series.series_instance_uid,
                fraction_id,
                course_id,
            )
        except (ServiceError, InputError, DicomError) as exc:
            message = exc.detail if isinstance(exc, ServiceError) else str(exc)
            self._fail(series, message, actor)
        except Exception as exc:
            log.exception("DICOM series %s could not be ingested", series.series_instance_uid)
            self._fail(series, f"internal error ({type(exc).__name__}); see the server log", actor)

    def _hold_new_planning_ct(self, series: DicomSeries, actor: str) -> bool:
        """Hold a new planning CT of a patient who has a course unless a planning CT sender sent
        it (a pattern match alone does not replace the reference of the next MVCT)."""
        if series.sender in self._rules.planning_aes:
            return False
        with self._ctx.sessions() as session:
            if (
                ingest.course_of_planning(session, series.patient_id, series.series_instance_uid)
                is not None
            ):
                return False
            course = ingest.latest_course(session, series.patient_id)
        if course is None:
            return False
        reason = (
            f"patient {series.patient_id!r} already has course {course.id}; a new planning CT "
            "becomes a course by itself only when a planning CT sender "
            f"(MVCT_GUIDE_DICOM_PLANNING_AES) sends it, and {series.sender!r} is not one"
        )
        with self._ctx.writer() as session:
            unassigned.hold(session, session.get_one(DicomSeries, series.id), reason, actor)
            session.commit()
        return True

    def _finish(
        self,
        series_id: int,
        state: SeriesState,
        *,
        course_id: int | None = None,
        fraction_id: int | None = None,
        error: str | None = None,
    ) -> None:
        with self._ctx.writer() as session:
            series = session.get_one(DicomSeries, series_id)
            series.state = state.value
            series.course_id = course_id if course_id is not None else series.course_id
            series.fraction_id = fraction_id if fraction_id is not None else series.fraction_id
            series.error = error
            series.updated_at = utcnow()
            session.commit()

    def _fail(self, series: DicomSeries, message: str, actor: str) -> None:
        log.warning("DICOM series %s refused: %s", series.series_instance_uid, message)
        with self._ctx.writer() as session:
            row = session.get_one(DicomSeries, series.id)
            row.state = SeriesState.FAILED.value
            row.error = message
            row.updated_at = utcnow()
            repo.record_audit(
                session,
                actor=actor,
                action="dicom_series_refused",
                entity="dicom_series",
                entity_id=series.id,
                detail={
                    "series_instance_uid": series.series_instance_uid,
                    "patient_id": series.patient_id,
                    "kind": series.kind,
                    "error": message,
                },
            )
            session.commit()


def _facts(members: Sequence[DicomInstance]) -> SeriesFacts:
    positions = [m.position_z_mm for m in members if m.position_z_mm is not None]
    extent = (max(positions) - min(positions)) if positions else 0.0
    return SeriesFacts(members[0].sender, members[0].series_description, extent)


def _actor(instance: DicomInstance) -> str:
    return f"{instance.source}:{instance.sender}"

"""Where registrations run: the job table is the truth, the worker pool does the work.

Life of a job (``jobs.status``)::

    queued ──claim (CAS, attempts+1)──▶ running ──result + CAS in one transaction──▶ done
                                          │  └──────bad images / engine refused──────▶ failed
                                          └──worker died──▶ queued (again, up to max_job_attempts)

At start-up every job left ``running`` or ``queued`` by a service that died is queued again.
The result row is unique per fraction and is written in the same transaction as the
compare-and-set running → done of the claiming attempt, so a fraction never gets two results,
whatever crashes or restarts in between. One dispatcher thread makes every job transition; it
also polls the table every few seconds, so nothing queued is forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.db import repository as repo
from app.db.models import Job, JobStatus, RegistrationResult
from app.pool import WorkerPool
from app.storage import ImageStore
from app.worker import RegistrationTask, TaskOutcome

log = logging.getLogger(__name__)
ACTOR = "system:jobs"
_POLL_S = 5.0


@dataclass(frozen=True)
class _Enqueue:
    job_id: int


@dataclass(frozen=True)
class _Done:
    job_id: int
    attempt: int
    future: Future[TaskOutcome]


class _Wake:
    pass


class _Stop:
    pass


_Event = _Enqueue | _Done | _Wake | _Stop


class JobRunner:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        writer_factory: sessionmaker[Session],
        store: ImageStore,
        pool: WorkerPool,
        *,
        max_attempts: int,
    ) -> None:
        self._sessions = session_factory
        self._writer = writer_factory
        self._store = store
        self._pool = pool
        self._max_attempts = max_attempts
        self._events: queue.Queue[_Event] = queue.Queue()
        self._pending: deque[int] = deque()
        self._in_flight: set[int] = set()
        self._waiters: dict[int, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}
        self._waiters_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._recover()
        self._pool.add_listener(self._on_slot_free)
        self._thread = threading.Thread(target=self._loop, name="mvct-guide-jobs", daemon=True)
        self._thread.start()
        self._events.put(_Wake())

    def stop(self, timeout_s: float = 10.0) -> None:
        self._pool.remove_listener(self._on_slot_free)
        if self._thread is not None:
            self._events.put(_Stop())
            self._thread.join(timeout_s)
            self._thread = None

    def _recover(self) -> None:
        """Queue again what a dead service left running (or fail it after too many tries)."""
        with self._writer() as session:
            for job_id in repo.job_ids_with_status(session, [JobStatus.RUNNING]):
                job = session.get(Job, job_id)
                assert job is not None
                if job.attempts >= self._max_attempts:
                    self._fail(
                        session,
                        job,
                        job.attempts,
                        f"the registration was interrupted {job.attempts} times (service or "
                        "worker stopped); it was not retried again. Post the MVCT again later or "
                        "ask the physicist to check the server.",
                        500,
                    )
                else:
                    job.status = JobStatus.QUEUED.value
                    repo.record_audit(
                        session,
                        actor=ACTOR,
                        action="requeued",
                        entity="fraction",
                        entity_id=job.fraction_id,
                        detail={"job_id": job.id, "attempts": job.attempts},
                    )
            session.commit()

    # --- public -----------------------------------------------------------------------------

    def enqueue(self, job_id: int) -> None:
        self._events.put(_Enqueue(job_id))

    async def wait_finished(self, job_id: int, timeout_s: float) -> bool:
        """Wait until the job is done or failed; False on timeout."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._waiters_lock:
            self._waiters.setdefault(job_id, []).append((loop, future))
        try:
            if await asyncio.to_thread(self._is_finished, job_id):
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, timeout_s)
            return future.done()
        finally:
            with self._waiters_lock:
                entries = self._waiters.get(job_id, [])
                if (loop, future) in entries:
                    entries.remove((loop, future))
                if not entries:
                    self._waiters.pop(job_id, None)

    def _is_finished(self, job_id: int) -> bool:
        with self._sessions() as session:
            job = session.get(Job, job_id)
            return job is not None and job.status in (JobStatus.DONE, JobStatus.FAILED)

    # --- dispatcher thread ------------------------------------------------------------------

    def _on_slot_free(self) -> None:
        self._events.put(_Wake())

    def _loop(self) -> None:
        while True:
            try:
                event = self._events.get(timeout=_POLL_S)
            except queue.Empty:
                event = None
            if isinstance(event, _Stop):
                return
            try:
                if isinstance(event, _Enqueue):
                    self._add_pending(event.job_id)
                elif isinstance(event, _Done):
                    self._complete(event)
                elif event is None:
                    self._poll_queued()
                self._dispatch()
            except SQLAlchemyError:
                log.exception("database error in the job dispatcher; retrying in %.0f s", _POLL_S)
            except Exception:
                log.exception("unexpected error in the job dispatcher")

    def _add_pending(self, job_id: int) -> None:
        if job_id not in self._in_flight and job_id not in self._pending:
            self._pending.append(job_id)

    def _poll_queued(self) -> None:
        with self._sessions() as session:
            for job_id in repo.job_ids_with_status(session, [JobStatus.QUEUED]):
                self._add_pending(job_id)

    def _dispatch(self) -> None:
        while self._pending and self._pool.has_free_slot():
            job_id = self._pending[0]
            with self._writer() as session:  # closing without commit rolls back
                attempt = repo.claim_job(session, job_id)
                task = self._task(session, job_id) if attempt is not None else None
                if attempt is None or task is None:  # finished or taken meanwhile
                    self._pending.popleft()
                    continue
                future = self._pool.try_submit(task)
                if future is None:  # lost the free slot meanwhile: stays queued
                    return
                session.commit()
            self._pending.popleft()
            self._in_flight.add(job_id)
            future.add_done_callback(
                lambda f, j=job_id, a=attempt: self._events.put(_Done(j, a, f))  # type: ignore[misc]
            )

    def _task(self, session: Session, job_id: int) -> RegistrationTask | None:
        job = session.get(Job, job_id)
        if job is None:
            return None
        fraction = job.fraction
        planning = fraction.course.planning_series
        iso = (fraction.isocenter_x_mm, fraction.isocenter_y_mm, fraction.isocenter_z_mm)
        return RegistrationTask(
            job_id=job_id,
            planning_sha256=planning.content_sha256,
            planning_files=tuple(str(p) for p in self._store.series_files(planning.content_sha256)),
            mvct_files=tuple(
                str(p) for p in self._store.series_files(fraction.mvct_series.content_sha256)
            ),
            isocenter_lps_mm=None if None in iso else iso,  # type: ignore[arg-type]
            dof=fraction.dof,
            mode=fraction.mode,
        )

    def _complete(self, done: _Done) -> None:
        self._in_flight.discard(done.job_id)
        try:
            outcome = done.future.result()
        except Exception as exc:  # the worker process died (BrokenProcessPool) or was cancelled
            self._worker_lost(done, exc)
        else:
            self._record(done, outcome)
        self._notify(done.job_id)

    def _worker_lost(self, done: _Done, exc: BaseException) -> None:
        log.warning("registration worker lost during job %d: %r", done.job_id, exc)
        with self._writer() as session:
            job = session.get(Job, done.job_id)
            if job is None:
                return
            if done.attempt >= self._max_attempts:
                self._fail(
                    session,
                    job,
                    done.attempt,
                    f"the registration worker stopped unexpectedly {done.attempt} times on this "
                    "MVCT; it was not retried again. Ask the physicist to check the server log.",
                    500,
                )
            elif repo.requeue_job(session, done.job_id, done.attempt):
                repo.record_audit(
                    session,
                    actor=ACTOR,
                    action="requeued",
                    entity="fraction",
                    entity_id=job.fraction_id,
                    detail={"job_id": job.id, "attempts": done.attempt, "reason": repr(exc)},
                )
                session.commit()
                self._pending.append(done.job_id)

    def _record(self, done: _Done, outcome: TaskOutcome) -> None:
        try:
            with self._writer() as session:
                job = session.get(Job, done.job_id)
                if job is None:
                    return
                if outcome.kind == "ok" and outcome.result is not None:
                    self._store_result(session, job, done.attempt, outcome)
                else:
                    status = 500 if outcome.kind == "error" else 422
                    message = outcome.message
                    if outcome.kind == "error":
                        message = f"internal error in the registration engine: {message}"
                    self._fail(session, job, done.attempt, message, status)
        except IntegrityError:
            # another attempt already stored this fraction's result: keep that one
            log.warning("job %d: a result for this fraction already exists", done.job_id)

    def _store_result(self, session: Session, job: Job, attempt: int, outcome: TaskOutcome) -> None:
        """Result row and running → done in one transaction, or nothing at all."""
        if not repo.finish_job(session, job.id, attempt, JobStatus.DONE):
            return  # not ours any more (re-queued meanwhile): store nothing
        result: dict[str, Any] = outcome.result or {}
        couch = result["couch_correction"]
        session.add(
            RegistrationResult(
                fraction_id=job.fraction_id,
                result=result,
                lateral_mm=couch["lateral_mm"],
                longitudinal_mm=couch["longitudinal_mm"],
                vertical_mm=couch["vertical_mm"],
                pitch_deg=couch["pitch_deg"],
                roll_deg=couch["roll_deg"],
                yaw_deg=couch["yaw_deg"],
                trusted=bool(result["trusted"]),
                engine_version=str(result.get("engine_version", ""))[:64],
            )
        )
        repo.record_audit(
            session,
            actor=ACTOR,
            action="registered",
            entity="fraction",
            entity_id=job.fraction_id,
            detail={
                "job_id": job.id,
                "attempt": attempt,
                "couch_correction": couch,
                "trusted": bool(result["trusted"]),
                "planning_cache_hit": outcome.planning_cache_hit,
                "worker_seconds": round(outcome.seconds, 3),
            },
        )
        session.commit()

    def _fail(self, session: Session, job: Job, attempt: int, message: str, status: int) -> None:
        """running (this attempt) → failed with the reason, audited; commits."""
        if not repo.finish_job(
            session, job.id, attempt, JobStatus.FAILED, error=message, error_status=status
        ):
            return
        repo.record_audit(
            session,
            actor=ACTOR,
            action="failed",
            entity="fraction",
            entity_id=job.fraction_id,
            detail={"job_id": job.id, "attempt": attempt, "error": message},
        )
        session.commit()

    def _notify(self, job_id: int) -> None:
        with self._waiters_lock:
            entries = list(self._waiters.get(job_id, []))
        for loop, future in entries:
            with contextlib.suppress(RuntimeError):  # the waiting loop has closed
                loop.call_soon_threadsafe(_set_done, future)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)

"""Where registrations run: the job table is the truth, the worker pool does the work.

Life of a job (``jobs.status``)::

    queued ──claim (CAS, attempts+1)──▶ running ──result + CAS in one transaction──▶ done
                                          │  └──────bad images / engine refused──────▶ failed
                                          └──worker died──▶ queued (again, up to max_job_attempts)

At start-up every job left ``running`` or ``queued`` by a service that died is queued again.
The result row is unique per fraction and is written in the same transaction as the
compare-and-set running → done of the claiming attempt, so a fraction never gets two results,
whatever crashes or restarts in between. One dispatcher thread makes every job transition; it
also polls the table every few seconds, so nothing queued is forgotten. The transitions themselves
are in :mod:`app.jobs.steps`, shared with the Celery workers of the scale-out mode.

Nothing is lost to a busy or briefly unreachable database: a finished registration whose result
cannot be written (SQLite's write lock held past the busy timeout, PostgreSQL restarting) stays
in memory and is written again with a growing delay (1 s … 30 s) until it is stored; waiters are
told only then. The same poll re-reads the jobs marked ``running``: one that no worker of this
service is running (its outcome was lost some other way) is queued again (or failed after
``max_job_attempts``), so a fraction is never stuck ``running`` until the next restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.db import repository as repo
from app.db.models import Job, JobStatus
from app.jobs import steps
from app.jobs.pool import WorkerPool
from app.jobs.task import RegistrationTask, TaskOutcome
from app.storage import ImageStore

log = logging.getLogger(__name__)
ACTOR = steps.ACTOR
_POLL_S = 5.0
_RETRY_FIRST_S = 1.0
_RETRY_MAX_S = 30.0


class Jobs(Protocol):
    """What the HTTP layer needs of wherever jobs run: this pool, or the queue of
    :class:`app.jobs.dispatch.QueueJobs`."""

    def start(self) -> None: ...

    def stop(self, timeout_s: float = 10.0) -> None: ...

    def enqueue(self, job_id: int) -> None: ...

    def prepare_planning(self, planning_sha256: str) -> None:
        """Have a worker prepare a new course's stored planning CT (best effort, returns at
        once; the course's first fraction prepares it when this did not)."""
        ...

    async def wait_finished(self, job_id: int, timeout_s: float) -> bool: ...


@dataclass(frozen=True)
class _Enqueue:
    job_id: int


@dataclass(frozen=True)
class _Done:
    job_id: int
    attempt: int
    future: Future[TaskOutcome]
    task: RegistrationTask


class _Wake:
    pass


class _Stop:
    pass


_Event = _Enqueue | _Done | _Wake | _Stop


@dataclass
class _Unrecorded:
    """A finished attempt whose outcome (held by its future) is not in the database yet."""

    done: _Done
    retry_at: float = 0.0
    delay_s: float = _RETRY_FIRST_S


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
        self._unrecorded: dict[int, _Unrecorded] = {}
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
        steps.requeue_interrupted(self._writer, self._max_attempts)

    # --- public -----------------------------------------------------------------------------

    def enqueue(self, job_id: int) -> None:
        self._events.put(_Enqueue(job_id))

    def prepare_planning(self, planning_sha256: str) -> None:
        self._pool.prepare_planning(steps.preparation_task(self._store, planning_sha256))

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
        next_poll = time.monotonic() + _POLL_S
        while True:
            wake = min([next_poll, *(u.retry_at for u in self._unrecorded.values())])
            try:
                event = self._events.get(timeout=max(0.0, wake - time.monotonic()))
            except queue.Empty:
                event = None
            if isinstance(event, _Stop):
                return
            try:
                if isinstance(event, _Enqueue):
                    self._add_pending(event.job_id)
                elif isinstance(event, _Done):
                    self._complete(event)
                self._record_due()
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + _POLL_S
                    self._poll_queued()
                    self._resume_orphans()
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
                claimed = steps.claim(session, self._store, job_id)
                if claimed is None:  # finished or taken meanwhile
                    self._pending.popleft()
                    continue
                attempt, task = claimed.attempt, claimed.task
                future = self._pool.try_submit(task)
                if future is None:  # lost the free slot meanwhile: stays queued
                    return
                session.commit()
            self._pending.popleft()
            self._in_flight.add(job_id)
            done = functools.partial(self._on_future_done, job_id, attempt, task)
            future.add_done_callback(done)

    def _on_future_done(
        self, job_id: int, attempt: int, task: RegistrationTask, future: Future[TaskOutcome]
    ) -> None:
        self._events.put(_Done(job_id, attempt, future, task))

    def _complete(self, done: _Done) -> None:
        self._in_flight.discard(done.job_id)
        self._unrecorded[done.job_id] = _Unrecorded(done)
        self._write_outcome(done.job_id)

    def _record_due(self) -> None:
        now = time.monotonic()
        for job_id in [j for j, u in self._unrecorded.items() if u.retry_at <= now]:
            self._write_outcome(job_id)

    def _write_outcome(self, job_id: int) -> None:
        """Store the attempt's outcome; on a database error keep it and try again later."""
        entry = self._unrecorded[job_id]
        done = entry.done
        try:
            try:
                outcome = done.future.result()
            except Exception as exc:  # the worker process died (BrokenProcessPool) or cancelled
                self._worker_lost(done, exc)
            else:
                self._record(done, outcome)
        except Exception as exc:  # a database error above all; never a tight retry loop
            entry.retry_at = time.monotonic() + entry.delay_s
            log.warning(
                "job %d: the database refused the outcome (%s); it is kept in memory and "
                "written again in %.0f s",
                job_id,
                type(exc).__name__,
                entry.delay_s,
                exc_info=not isinstance(exc, SQLAlchemyError),
            )
            entry.delay_s = min(entry.delay_s * 2, _RETRY_MAX_S)
            return
        del self._unrecorded[job_id]
        self._notify(job_id)

    def _resume_orphans(self) -> None:
        """Queue again the jobs marked running that no worker of this service runs."""
        with self._sessions() as session:
            running = repo.job_ids_with_status(session, [JobStatus.RUNNING])
        orphans = [j for j in running if j not in self._in_flight and j not in self._unrecorded]
        if not orphans:
            return
        for job_id in steps.requeue_orphans(self._writer, orphans, self._max_attempts):
            log.warning("job %d was marked running but no worker ran it: queued again", job_id)
            self._add_pending(job_id)

    def _worker_lost(self, done: _Done, exc: BaseException) -> None:
        log.warning("registration worker lost during job %d: %r", done.job_id, exc)
        if steps.worker_lost(
            self._writer, done.job_id, done.attempt, repr(exc), self._max_attempts
        ):
            self._pending.append(done.job_id)

    def _record(self, done: _Done, outcome: TaskOutcome) -> None:
        steps.record_outcome(self._writer, done.job_id, done.attempt, outcome)
        if outcome.planning_source != "dicom":
            return
        try:  # the worker holding it writes its prepared file for the others
            self._pool.prepare_planning(
                steps.preparation_task(self._store, done.task.planning_sha256)
            )
        except Exception:
            log.exception("job %d: could not have its planning CT's file written", done.job_id)

    def _notify(self, job_id: int) -> None:
        with self._waiters_lock:
            entries = list(self._waiters.get(job_id, []))
        for loop, future in entries:
            with contextlib.suppress(RuntimeError):  # the waiting loop has closed
                loop.call_soon_threadsafe(_set_done, future)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)

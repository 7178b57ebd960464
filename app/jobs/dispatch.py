"""The API side of the queue: publish jobs to the broker, wait for their rows to finish.

Each API replica runs one publisher thread. A job is published once when it is created; one the
broker may have lost is published again by a periodic sweep (every ``queue_sweep_s``): jobs
still queued after a sweep interval (the API died between the commit and the publish, or the
broker restarted empty). Every ``job_heartbeat_s`` it also looks for running jobs whose worker
has stopped heartbeating for ``job_heartbeat_timeout_s`` (:mod:`app.jobs.heartbeat`) and
publishes them again (at most once per timeout each): a worker takes them over. At start every
queued job is published. Publishing twice is harmless: the worker's claim is a
compare-and-set on the jobs table, so a second message for a job finds it running or done and
does nothing.

Waiting for a job polls its row, so any replica can answer for a job any worker ran.

A new course's planning CT is sent to the workers to be prepared
(:meth:`QueueJobs.prepare_planning`) by the same thread, after the jobs waiting to be published,
once: a broker that refuses it costs the course's first fraction the preparation (logged), never
the course.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Job, JobStatus, utcnow

log = logging.getLogger(__name__)
_FINISHED = (JobStatus.DONE.value, JobStatus.FAILED.value)
_MAX_BACKOFF_S = 30.0
_SWEEP_LIMIT = 500


class _Stop:
    pass


@dataclass(frozen=True)
class _Prepare:
    planning_sha256: str


class QueueJobs:
    """:class:`app.jobs.embedded.Jobs` for the scale-out mode; ``publish(job_id)`` sends one
    message."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        publish: Callable[[int], None],
        *,
        sweep_s: float,
        stale_after_s: float,
        check_s: float | None = None,
        publish_preparation: Callable[[str], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._publish = publish
        self._publish_preparation = publish_preparation
        self._sweep_s = sweep_s
        self._stale_after_s = stale_after_s
        self._check_s = check_s or sweep_s
        self._republished: dict[int, float] = {}  #: stale job → when it was last published
        self._outbox: queue.Queue[int | _Prepare | _Stop] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="mvct-guide-publish", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._thread is not None:
            self._outbox.put(_Stop())
            self._thread.join(timeout_s)
            self._thread = None

    def enqueue(self, job_id: int) -> None:
        self._outbox.put(job_id)

    def prepare_planning(self, planning_sha256: str) -> None:
        """Have a worker prepare this (new course's) planning CT; returns at once."""
        if self._publish_preparation is not None:
            self._outbox.put(_Prepare(planning_sha256))

    async def wait_finished(self, job_id: int, timeout_s: float) -> bool:
        """Poll the job's row until done or failed; False on timeout."""
        deadline = time.monotonic() + timeout_s
        delay = 0.1
        while True:
            if await asyncio.to_thread(self._is_finished, job_id):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 1.5, 0.5)

    def _is_finished(self, job_id: int) -> bool:
        with self._sessions() as session:
            status = session.scalar(select(Job.status).where(Job.id == job_id))
            return status in _FINISHED

    # --- publisher thread -------------------------------------------------------------------

    def _loop(self) -> None:
        pending: deque[int] = deque()
        preparations: list[str] = []
        backoff_s = 1.0
        retry_at = 0.0
        next_sweep = 0.0  # sweep at once: publish what a stopped replica left queued
        next_check = 0.0
        first_sweep = True
        while True:
            now = time.monotonic()
            wake = min(next_sweep, next_check)
            wake = wake if not pending else min(wake, retry_at)
            try:
                item = self._outbox.get(timeout=max(0.0, wake - now))
            except queue.Empty:
                item = None
            while item is not None:
                if isinstance(item, _Stop):
                    return
                if isinstance(item, _Prepare):
                    preparations.append(item.planning_sha256)
                elif item not in pending:
                    pending.append(item)
                try:
                    item = self._outbox.get_nowait()
                except queue.Empty:
                    item = None
            now = time.monotonic()
            if now >= next_check:
                try:
                    for job_id in self._stale_jobs(now):
                        if job_id not in pending:
                            pending.append(job_id)
                except Exception:
                    log.exception("cannot read the jobs table; checking heartbeats again later")
                next_check = now + self._check_s
            if now >= next_sweep:
                try:
                    for job_id in self._lost_jobs(everything_queued=first_sweep):
                        if job_id not in pending:
                            pending.append(job_id)
                    first_sweep = False
                except Exception:
                    log.exception("cannot read the jobs table; sweeping again later")
                next_sweep = now + self._sweep_s
            if pending and now >= retry_at:
                try:
                    while pending:
                        self._publish(pending[0])
                        pending.popleft()
                    backoff_s = 1.0
                except Exception as exc:
                    log.warning(
                        "cannot publish job %d to the broker (%s); %d job(s) wait, retry in %.0f s",
                        pending[0],
                        type(exc).__name__,
                        len(pending),
                        backoff_s,
                    )
                    retry_at = now + backoff_s
                    backoff_s = min(backoff_s * 2, _MAX_BACKOFF_S)
            while preparations:  # after the jobs; not at all while the broker refuses them
                self._send_preparation(preparations.pop(0), broker_refusing=bool(pending))

    def _send_preparation(self, planning_sha256: str, *, broker_refusing: bool) -> None:
        assert self._publish_preparation is not None
        try:
            if broker_refusing:
                raise ConnectionError("the broker refuses messages")
            self._publish_preparation(planning_sha256)
        except Exception as exc:
            log.warning(
                "cannot ask the workers to prepare planning %s (%s); the course's first "
                "fraction prepares it",
                planning_sha256[:12],
                type(exc).__name__,  # never the message: it may hold the broker's URL
            )

    def _lost_jobs(self, *, everything_queued: bool) -> list[int]:
        """Queued jobs whose message the broker may not hold any more."""
        now = utcnow()
        queued_before = now if everything_queued else now - timedelta(seconds=self._sweep_s)
        with self._sessions() as session:
            queued = session.scalars(
                select(Job.id)
                .where(Job.status == JobStatus.QUEUED.value, Job.created_at <= queued_before)
                .order_by(Job.id)
                .limit(_SWEEP_LIMIT)
            ).all()
        return list(queued)

    def _stale_jobs(self, now_mono: float) -> list[int]:
        """Running jobs without a sign of life (start or heartbeat) for ``stale_after_s``,
        not published again within that time already."""
        before = utcnow() - timedelta(seconds=self._stale_after_s)
        alive = func.coalesce(Job.heartbeat_at, Job.started_at)
        with self._sessions() as session:
            stale = session.scalars(
                select(Job.id)
                .where(
                    Job.status == JobStatus.RUNNING.value,
                    Job.started_at < before,
                    alive < before,
                )
                .order_by(Job.id)
                .limit(_SWEEP_LIMIT)
            ).all()
        self._republished = {
            job_id: at
            for job_id, at in self._republished.items()
            if job_id in stale and now_mono - at < self._stale_after_s
        }
        fresh = [job_id for job_id in stale if job_id not in self._republished]
        for job_id in fresh:
            log.warning("job %d: its worker stopped heartbeating; publishing it again", job_id)
            self._republished[job_id] = now_mono
        return fresh

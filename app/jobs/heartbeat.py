"""Queue workers' heartbeats: how a job whose worker died is noticed in seconds, not minutes.

While a queue worker process runs an attempt, a thread of that process writes
``jobs.heartbeat_at`` every ``job_heartbeat_s`` (compare-and-set on the attempt, so a stale
worker never refreshes a job another worker took over). The API replicas' publisher
(:mod:`app.jobs.dispatch`) looks every ``job_heartbeat_s`` for running jobs whose last sign of
life (the later of ``started_at`` and ``heartbeat_at``) is older than ``job_heartbeat_timeout_s``
(15 s) and publishes them again; the worker that receives the message finds the job stale
(:func:`app.jobs.steps.is_stale`) and takes it over with a new attempt.

This does not depend on the broker: Redis keeps a dead worker's unacknowledged message until its
visibility timeout (above the job time limit: minutes); RabbitMQ gives it back when the
connection drops. Times are the hosts' clocks (UTC): keep them synchronised (NTP).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Job, JobStatus, utcnow

log = logging.getLogger(__name__)


def beat(writer: sessionmaker[Session], job_id: int, attempt: int) -> bool:
    """One heartbeat of ``attempt``; False when the job is no longer this attempt's."""
    with writer() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING.value, Job.attempts == attempt)
            .values(heartbeat_at=utcnow())
        )
        session.commit()
        return bool(result.rowcount)  # type: ignore[attr-defined]


@contextlib.contextmanager
def heartbeating(
    writer: sessionmaker[Session], job_id: int, attempt: int, interval_s: float
) -> Iterator[None]:
    """Beat every ``interval_s`` in a background thread while the block runs."""
    stop = threading.Event()

    def run() -> None:
        while True:
            try:
                if not beat(writer, job_id, attempt):
                    log.warning("job %d: attempt %d was taken over or finished", job_id, attempt)
                    return
            except Exception as exc:  # the database is away: try again at the next beat
                log.warning("job %d: heartbeat not written (%s)", job_id, type(exc).__name__)
            if stop.wait(interval_s):
                return

    thread = threading.Thread(target=run, name=f"mvct-guide-heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(interval_s + 5.0)

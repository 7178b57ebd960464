"""The Celery application of the scale-out mode: registrations acknowledged late, warm workers.

``mvct-guide worker`` runs :func:`run_worker`: a Celery worker (prefork pool, ``--concurrency``
processes) whose every process imports ITK/elastix once when it starts (``worker_process_init``,
as the embedded pool's processes do) and opens its own database engine after the fork.

Delivery guarantees (Celery's documented options, set in :func:`make_celery`):

* ``task_acks_late``: a message is acknowledged after the task returns, not when it is received;
* ``task_reject_on_worker_lost``: a worker process killed mid-task gives its message back to the
  broker, which delivers it again (flagged ``redelivered``);
* ``worker_prefetch_multiplier = 1``: a process reserves one message at a time, so a slow job does
  not hold others hostage;
* Redis ``visibility_timeout`` above the task's hard time limit: Redis only redelivers an
  unacknowledged message once no live attempt can still be running it.

The task itself is :func:`app.jobs.steps.run_job`: claim (compare-and-set), the same
``worker.run_registration`` as the embedded pool, record. The broker only says "look at job N";
the jobs table decides what happens, so a message delivered twice never yields two results.

A second task, :data:`PREPARE_TASK_NAME`, is sent when a course is created: one worker process
prepares the planning CT into its memory and writes the prepared file every other process loads
(:mod:`registration.prepared_file`), so the course's first fraction does not prepare it. It is
idempotent and acknowledged when received: a preparation lost with its worker, or one that fails,
only means the first fraction prepares the planning CT itself.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task, signals
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.storage import ImageStore

log = logging.getLogger(__name__)
TASK_NAME = "mvct_guide.register"
PREPARE_TASK_NAME = "mvct_guide.prepare_planning"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DB_RETRY_S = 5.0
_DB_MAX_RETRIES = 120  # ten minutes of an unreachable database


def make_celery(settings: Settings) -> Celery:
    """The Celery app for ``settings`` (producer side and worker side use the same one)."""
    app = Celery("mvct_guide", broker=settings.broker_url, set_as_current=False)
    hard_limit_s = settings.job_time_limit_s
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # the result lives in the database
        task_default_queue=settings.queue_name,
        task_serializer="json",
        accept_content=["json"],
        task_time_limit=hard_limit_s,
        task_soft_time_limit=max(hard_limit_s - 5.0, 1.0),
        broker_transport_options={"visibility_timeout": int(hard_limit_s * 2 + 60)},
        broker_connection_retry_on_startup=True,
        # the worker processes import ITK before they report ready (seconds, not Celery's 4 s)
        worker_proc_alive_timeout=300.0,
    )
    app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)(_register)
    app.task(name=PREPARE_TASK_NAME, acks_late=False, reject_on_worker_lost=False)(_prepare)
    return app


def publisher(app: Celery, queue: str) -> Any:
    """``publish(job_id)`` for :class:`app.jobs.dispatch.QueueJobs` (retries a broken link)."""
    return _sender(app, TASK_NAME, queue)


def preparation_publisher(app: Celery, queue: str) -> Any:
    """``publish(planning_sha256)``: have a worker prepare a new course's planning CT."""
    return _sender(app, PREPARE_TASK_NAME, queue)


def _sender(app: Celery, task_name: str, queue: str) -> Any:
    def publish(argument: int | str) -> None:
        app.send_task(
            task_name,
            args=[argument],
            queue=queue,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )

    return publish


# --- inside a worker process --------------------------------------------------------------


@dataclass
class _Runtime:
    settings: Settings
    writer: sessionmaker[Session]
    store: ImageStore


_settings: Settings | None = None  # set in the main worker process, inherited by the fork
_runtime: _Runtime | None = None  # built in each pool process after the fork


def _init_process(**_: Any) -> None:
    """Each pool process: its own database engine, and ITK/elastix imported once."""
    global _runtime
    if _settings is None:  # a Celery worker that is not ``mvct-guide worker``
        return
    from app.db import record_chain
    from app.db.engine import make_engine, make_writer_factory
    from app.jobs import task as worker
    from app.record_key import record_key_for

    settings = _settings
    engine = make_engine(
        settings.resolved_database_url(), sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    writer = make_writer_factory(engine)
    record_chain.install(writer, lambda: record_key_for(settings))
    with writer() as probe:  # a missing or short key stops the worker at start
        record_chain.key_of(probe)
    _runtime = _Runtime(settings, writer, ImageStore(settings.images_dir, settings.tmp_dir))
    worker.initialize(settings.planning_cache_size)
    worker.warm_up()
    log.info("registration worker process %d is warm", os.getpid())


def _register(task: Task, job_id: int, take_over: bool = False) -> str:
    from app.jobs import steps

    runtime = _runtime
    if runtime is None:
        raise RuntimeError("this Celery worker was not started by `mvct-guide worker`")
    redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
    try:
        outcome = steps.run_job(
            runtime.writer,
            runtime.store,
            job_id,
            take_over_running=take_over or redelivered,
            stale_after_s=runtime.settings.job_heartbeat_timeout_s,
            max_attempts=runtime.settings.max_job_attempts,
            heartbeat_s=runtime.settings.job_heartbeat_s,
        )
    except (OperationalError, InterfaceError) as exc:
        # the database is unreachable: try again later; this delivery's own claim (if it got
        # that far) is taken over by the retry
        log.warning("job %d: database unavailable (%s); retrying", job_id, type(exc).__name__)
        raise task.retry(
            kwargs={"job_id": job_id, "take_over": True},
            countdown=_DB_RETRY_S,
            max_retries=_DB_MAX_RETRIES,
        ) from None
    log.info("job %d: %s", job_id, outcome)
    return outcome


def _prepare(planning_sha256: str) -> str:
    """Prepare a planning CT in this process and its prepared file (see the module docstring)."""
    from app.jobs import steps
    from app.jobs import task as worker

    runtime = _runtime
    if runtime is None:
        raise RuntimeError("this Celery worker was not started by `mvct-guide worker`")
    if not _SHA256.fullmatch(planning_sha256):
        log.warning("refused to prepare %r: not a series content hash", planning_sha256[:80])
        return "refused"
    outcome = worker.prepare(steps.preparation_task(runtime.store, planning_sha256))
    if outcome.kind != "ok":
        log.warning(
            "planning %s not prepared in process %d (its first fraction prepares it): %s",
            planning_sha256[:12],
            os.getpid(),
            outcome.message,
        )
    else:
        log.info(
            "planning %s ready in process %d (from %s, %.2f s)%s",
            planning_sha256[:12],
            os.getpid(),
            outcome.planning_source,
            outcome.seconds,
            f"; {outcome.message}" if outcome.message else "",
        )
    return outcome.kind


def run_worker(settings: Settings, concurrency: int, loglevel: str = "INFO") -> None:
    """Run a Celery worker until it is stopped (SIGTERM: finish the running tasks, then exit)."""
    global _settings
    _settings = settings
    signals.worker_process_init.connect(_init_process, weak=False)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = make_celery(settings)
    app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            "--pool=prefork",
            f"--loglevel={loglevel}",
            f"--queues={settings.queue_name}",
            f"--hostname=mvct-guide-{os.getpid()}@{socket.gethostname()}",
            "--without-gossip",
            "--without-mingle",
        ]
    )

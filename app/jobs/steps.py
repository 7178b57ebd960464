"""A registration job's database steps: the same for the embedded pool and the Celery workers.

One job, whichever path runs it::

    claim (CAS queued → running, attempts+1)  →  worker.run_registration(task)  →  record_outcome
                                                  (a warm worker process, no database)

* :func:`claim` and the compare-and-set of :func:`record_outcome` make the jobs table the truth: the
  result row is written in the same transaction as running (this attempt) → done, and the result is
  unique per fraction, so a broker that delivers a job twice, or a worker that dies half-way, can
  never give a fraction two results.
* The embedded :class:`app.jobs.embedded.JobRunner` claims in its dispatcher thread, runs the
  task in its
  process pool and records the outcome when the future completes; :func:`run_job` does the three in
  a row inside a Celery worker process.
* A job left ``running`` by a dead worker is taken over (:func:`take_over`, attempts+1) by the
  next delivery of its message — a broker redelivery after the worker was lost, or a republished
  message once the job's worker has stopped heartbeating (:mod:`app.jobs.heartbeat`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.db import repository as repo
from app.db.models import Job, JobStatus, RegistrationResult, utcnow
from app.db.models_anatomy import FractionFigures, QaCourse
from app.db.models_planning import PlanningObject
from app.jobs import task as worker
from app.jobs.heartbeat import heartbeating
from app.jobs.planning_cache import expected_file, prepared_root, structures_cache_file
from app.jobs.task import PreparePlanningTask, RegistrationTask, TaskOutcome
from app.storage import ImageStore
from registration.planning_package import IsocenterSource
from registration.result import RegistrationResult as EngineResult

log = logging.getLogger(__name__)
ACTOR = "system:jobs"


@dataclass(frozen=True)
class Claimed:
    job_id: int
    attempt: int
    task: RegistrationTask


def claim(session: Session, store: ImageStore, job_id: int) -> Claimed | None:
    """queued → running (not committed: the caller commits once the task is handed over)."""
    attempt = repo.claim_job(session, job_id)
    if attempt is None:
        return None
    task = task_for(session, store, job_id)
    return None if task is None else Claimed(job_id, attempt, task)


def take_over(
    session: Session, store: ImageStore, job_id: int, *, reason: str, max_attempts: int
) -> Claimed | None:
    """running (a lost attempt) → running (a new attempt), audited; None if not running any more.

    Fails the job instead when it has used its ``max_attempts``. Not committed.
    """
    job = session.get(Job, job_id)
    if job is None or job.status != JobStatus.RUNNING.value:
        return None
    lost = job.attempts
    if lost >= max_attempts:
        fail(
            session,
            job,
            lost,
            f"the registration worker stopped unexpectedly {lost} times on this MVCT; it was not "
            "retried again. Ask the physicist to check the worker logs.",
            500,
        )
        return None
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING.value, Job.attempts == lost)
        .values(attempts=lost + 1, started_at=utcnow())
        .returning(Job.attempts)
    )
    row = result.first()
    if row is None:
        return None
    _audit_requeued(session, job, lost, reason)
    task = task_for(session, store, job_id)
    return None if task is None else Claimed(job_id, int(row[0]), task)


def is_stale(job: Job, stale_after_s: float, now: datetime | None = None) -> bool:
    """Running, but no sign of life (claim or heartbeat) for ``stale_after_s``."""
    if job.status != JobStatus.RUNNING.value or job.started_at is None:
        return False
    alive = max(job.started_at, job.heartbeat_at or job.started_at)
    return alive < (now or utcnow()) - timedelta(seconds=stale_after_s)


def task_for(session: Session, store: ImageStore, job_id: int) -> RegistrationTask | None:
    """What a worker process needs to register the job's fraction: plain picklable data."""
    job = session.get(Job, job_id)
    if job is None:
        return None
    fraction = job.fraction
    course = fraction.course
    planning = course.planning_series
    iso = (fraction.isocenter_x_mm, fraction.isocenter_y_mm, fraction.isocenter_z_mm)
    rtstruct = (
        None if fraction.rtstruct_id is None else session.get(PlanningObject, fraction.rtstruct_id)
    )
    rtstruct_file = None if rtstruct is None else expected_file(store, rtstruct)
    warnings = tuple(fraction.planning_warnings or ())
    mvct_centre = fraction.isocenter_source == IsocenterSource.MVCT_CENTRE.value
    is_qa = session.scalar(select(QaCourse.id).where(QaCourse.course_id == fraction.course_id))
    return RegistrationTask(
        job_id=job_id,
        planning_sha256=planning.content_sha256,
        planning_files=tuple(str(p) for p in store.series_files(planning.content_sha256)),
        mvct_files=tuple(str(p) for p in store.series_files(fraction.mvct_series.content_sha256)),
        isocenter_lps_mm=None if None in iso else iso,  # type: ignore[arg-type]
        dof=fraction.dof,
        mode=fraction.mode,
        rtstruct_file=None if rtstruct_file is None else str(rtstruct_file),
        structures_cache=None
        if rtstruct is None
        else str(structures_cache_file(store, planning.content_sha256, rtstruct.content_sha256)),
        ptv_margin_mm=course.ptv_margin_mm,
        prv_margin_mm=course.prv_margin_mm,
        serial_oar_names=course.serial_oar_name_parts,
        planning_warnings=() if mvct_centre else warnings,
        untrusted_reasons=warnings if mvct_centre else (),
        match_structure=course.match_structure,
        match_margin_mm=course.match_margin_mm,
        measure="qa_phantom" if is_qa is not None else "anatomy",
        prepared_root=str(prepared_root(store, planning.content_sha256)),
    )


def preparation_task(store: ImageStore, planning_sha256: str) -> PreparePlanningTask:
    """What a worker process needs to prepare a stored planning CT (at course creation)."""
    return PreparePlanningTask(
        planning_sha256=planning_sha256,
        planning_files=tuple(str(p) for p in store.series_files(planning_sha256)),
        prepared_root=str(prepared_root(store, planning_sha256)),
    )


def keep_prepared(task: RegistrationTask, outcome: TaskOutcome) -> None:
    """After a job recorded its outcome: store the planning CT it prepared from DICOM for the
    other worker processes (:func:`app.jobs.task.persist_prepared`). A failure is logged: the
    other processes then prepare it themselves."""
    if outcome.planning_source != "dicom":
        return
    try:
        if worker.persist_prepared(task.planning_sha256, task.prepared_root):
            log.info("planning %s: prepared file written", task.planning_sha256[:12])
    except OSError as exc:
        log.warning("planning %s: prepared file not written (%s)", task.planning_sha256[:12], exc)


def record_outcome(
    writer: sessionmaker[Session], job_id: int, attempt: int, outcome: TaskOutcome
) -> None:
    """Store the result (running → done) or the reason (running → failed) of this attempt."""
    try:
        with writer() as session:
            job = session.get(Job, job_id)
            if job is None:
                return
            if outcome.kind == "ok" and outcome.result is not None:
                _store_result(session, job, attempt, outcome)
            else:
                status = 500 if outcome.kind == "error" else 422
                message = outcome.message
                if outcome.kind == "error":
                    message = f"internal error in the registration engine: {message}"
                fail(session, job, attempt, message, status)
                session.commit()
    except IntegrityError:
        # another attempt already stored this fraction's result: keep that one
        log.warning("job %d: a result for this fraction already exists", job_id)


def worker_lost(
    writer: sessionmaker[Session], job_id: int, attempt: int, reason: str, max_attempts: int
) -> bool:
    """The process running ``attempt`` died: queue the job again (True) or fail it."""
    with writer() as session:
        job = session.get(Job, job_id)
        if job is None:
            return False
        if attempt >= max_attempts:
            fail(
                session,
                job,
                attempt,
                f"the registration worker stopped unexpectedly {attempt} times on this "
                "MVCT; it was not retried again. Ask the physicist to check the server log.",
                500,
            )
            session.commit()
            return False
        if not repo.requeue_job(session, job_id, attempt):
            return False
        repo.record_audit(
            session,
            actor=ACTOR,
            action="requeued",
            entity="fraction",
            entity_id=job.fraction_id,
            detail={"job_id": job.id, "attempts": attempt, "reason": reason},
        )
        session.commit()
        return True


def requeue_interrupted(writer: sessionmaker[Session], max_attempts: int) -> None:
    """Queue again what a dead service left running (or fail it after too many tries).

    Only for the embedded pool, whose one process owns every worker: with a queue, another
    host's worker may be running the job right now.
    """
    with writer() as session:
        for job_id in repo.job_ids_with_status(session, [JobStatus.RUNNING]):
            job = session.get(Job, job_id)
            assert job is not None
            if job.attempts >= max_attempts:
                fail(
                    session,
                    job,
                    job.attempts,
                    f"the registration was interrupted {job.attempts} times (service or "
                    "worker stopped); it was not retried again. Post the MVCT again later or "
                    "ask the physicist to check the server.",
                    500,
                )
            else:
                job.status = JobStatus.QUEUED
                repo.record_audit(
                    session,
                    actor=ACTOR,
                    action="requeued",
                    entity="fraction",
                    entity_id=job.fraction_id,
                    detail={"job_id": job.id, "attempts": job.attempts},
                )
        session.commit()


def requeue_orphans(
    writer: sessionmaker[Session], job_ids: list[int], max_attempts: int
) -> list[int]:
    """Embedded pool: these running jobs have no worker (their outcome was lost): queue them
    again (compare-and-set on the attempt) or fail them. Returns the ids queued again."""
    requeued = []
    with writer() as session:
        for job_id in job_ids:
            job = session.get(Job, job_id)
            if job is None or job.status != JobStatus.RUNNING.value:
                continue
            if job.attempts >= max_attempts:
                fail(
                    session,
                    job,
                    job.attempts,
                    f"the registration was interrupted {job.attempts} times; it was not retried "
                    "again. Post the MVCT again or ask the physicist to check the server log.",
                    500,
                )
            elif repo.requeue_job(session, job_id, job.attempts):
                _audit_requeued(
                    session, job, job.attempts, "marked running, but no worker was running it"
                )
                requeued.append(job_id)
        session.commit()
    return requeued


def run_job(
    writer: sessionmaker[Session],
    store: ImageStore,
    job_id: int,
    *,
    take_over_running: bool,
    stale_after_s: float,
    max_attempts: int,
    heartbeat_s: float | None = None,
) -> str:
    """Claim, register in this process, record: the whole job, as a queue worker runs it.

    ``take_over_running``: this delivery is known to follow a lost one (the broker says it
    redelivered), so a job still marked running has no live attempt. ``heartbeat_s``: write
    the job's heartbeat this often while registering (:mod:`app.jobs.heartbeat`); a job
    without a sign of life for ``stale_after_s`` is taken over. Returns what happened.
    """
    with writer() as session:  # closing without commit rolls back
        claimed = claim(session, store, job_id)
        if claimed is None:
            job = session.get(Job, job_id)
            if job is None:
                return "unknown job"
            if job.status != JobStatus.RUNNING.value:
                return f"already {job.status}"  # a duplicate delivery: nothing to do
            if not (take_over_running or is_stale(job, stale_after_s)):
                return "running elsewhere"
            claimed = take_over(
                session,
                store,
                job_id,
                reason="the worker running it was lost (message delivered again)",
                max_attempts=max_attempts,
            )
            if claimed is None:
                session.commit()  # a job that ran out of attempts was marked failed
                return "not taken over"
        session.commit()
    log.info("job %d: attempt %d running in process %d", job_id, claimed.attempt, os.getpid())
    if heartbeat_s is None:
        outcome = worker.run_registration(claimed.task)
    else:
        with heartbeating(writer, job_id, claimed.attempt, heartbeat_s):
            outcome = worker.run_registration(claimed.task)
    record_outcome(writer, job_id, claimed.attempt, outcome)
    keep_prepared(claimed.task, outcome)
    return outcome.kind


def fail(session: Session, job: Job, attempt: int, message: str, status: int) -> None:
    """running (this attempt) → failed with the reason, audited; the caller commits."""
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


def _store_result(session: Session, job: Job, attempt: int, outcome: TaskOutcome) -> None:
    """Result row and running → done in one transaction, or nothing at all."""
    if not repo.finish_job(session, job.id, attempt, JobStatus.DONE):
        return  # not ours any more (re-queued or taken over meanwhile): store nothing
    result = EngineResult.from_dict(outcome.result or {})
    session.add(RegistrationResult.of(job.fraction_id, result, list(outcome.residuals)))
    if outcome.figures is not None:
        session.add(
            FractionFigures(
                fraction_id=job.fraction_id,
                anatomy=outcome.figures.get("anatomy"),
                phantom=outcome.figures.get("phantom"),
                note=outcome.figures.get("note"),
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
            "couch_correction": result.couch_correction.as_dict(),
            "trusted": result.trusted,
            "planning_cache_hit": outcome.planning_cache_hit,
            "planning_source": outcome.planning_source,
            "worker_seconds": round(outcome.seconds, 3),
        },
    )
    session.commit()


def _audit_requeued(session: Session, job: Job, lost_attempts: int, reason: str) -> None:
    repo.record_audit(
        session,
        actor=ACTOR,
        action="requeued",
        entity="fraction",
        entity_id=job.fraction_id,
        detail={"job_id": job.id, "attempts": lost_attempts, "reason": reason},
    )

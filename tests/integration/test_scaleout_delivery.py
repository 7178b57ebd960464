"""The queue's delivery rules, without a broker: the jobs table decides what a message does.

* the API side publishes every queued job at start and keeps retrying while the broker refuses;
* a message for a finished job, or for a job a live worker is running, does nothing;
* a redelivered message (the broker says its worker was lost), or any message for a job running
  longer than any live attempt can, takes the job over as a new attempt — or fails it once it
  has used its attempts;
* a new course's planning preparation that the broker refuses is logged; the course is created.

The registration itself is replaced by a stub outcome here; the real one runs in
``test_scaleout_queue.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import service_fixtures as sf
from service_fixtures import TestClient
from sqlalchemy import select, update

from app.db.models import AuditEvent, Job, JobStatus, utcnow
from app.jobs import steps
from app.jobs import task as worker
from app.jobs.dispatch import QueueJobs
from app.jobs.task import TaskOutcome
from app.main import create_app


@pytest.fixture
def queued(tmp_path: Path, database_url: str, series: sf.Samples) -> Iterator[TestClient]:
    """A service without workers holding two queued fractions."""
    with TestClient(create_app(sf.make_settings(tmp_path, database_url))) as client:
        headers = sf.add_api_key(client, "console-1")
        for index in range(2):
            response = client.post(
                "/api/v1/fractions",
                params={"wait": "false"},
                headers=headers,
                data={"patient_id": sf.PATIENT_ID},
                files=sf.upload("mvct", series.mvcts[index])
                + sf.upload("planning", series.planning),
            )
            assert response.status_code == 202, response.text
        yield client


def ctx_of(client: TestClient) -> Any:
    return client.app.state.context  # type: ignore[attr-defined]


def job_ids(client: TestClient) -> list[int]:
    with ctx_of(client).sessions() as session:
        return list(session.scalars(select(Job.id).order_by(Job.id)))


def job(client: TestClient, job_id: int) -> Job:
    with ctx_of(client).sessions() as session:
        row = session.get(Job, job_id)
        assert row is not None
        return row


def set_job(client: TestClient, job_id: int, **values: Any) -> None:
    with ctx_of(client).writer() as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))
        session.commit()


class FlakyBroker:
    """Refuses the first ``failures`` messages, then takes them."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.published: list[int] = []
        self.refused = 0
        self.lock = threading.Lock()

    def publish(self, job_id: int) -> None:
        with self.lock:
            if self.refused < self.failures:
                self.refused += 1
                raise ConnectionError("broker down")
            self.published.append(job_id)


def wait_until(condition: Any, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_queued_jobs_are_published_at_start_and_retried_while_the_broker_refuses(
    queued: TestClient,
) -> None:
    broker = FlakyBroker(failures=2)
    jobs = QueueJobs(ctx_of(queued).sessions, broker.publish, sweep_s=3600, stale_after_s=3600)
    jobs.start()
    try:
        assert wait_until(lambda: sorted(broker.published) == job_ids(queued))
        assert broker.refused == 2
        jobs.enqueue(12345)
        assert wait_until(lambda: 12345 in broker.published)
    finally:
        jobs.stop()


def test_a_message_for_a_finished_or_live_job_does_nothing(
    queued: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(_: Any) -> TaskOutcome:
        raise AssertionError("the registration ran for a duplicate message")

    monkeypatch.setattr(worker, "run_registration", must_not_run)
    ctx = ctx_of(queued)
    first, second = job_ids(queued)
    set_job(queued, first, status=JobStatus.DONE.value, attempts=1)
    set_job(queued, second, status=JobStatus.RUNNING.value, attempts=1, started_at=utcnow())
    run = {"take_over_running": False, "stale_after_s": 600.0, "max_attempts": 3}
    assert steps.run_job(ctx.writer, ctx.store, first, **run) == "already done"
    assert steps.run_job(ctx.writer, ctx.store, second, **run) == "running elsewhere"
    assert (job(queued, second).status, job(queued, second).attempts) == ("running", 1)


@pytest.mark.parametrize("why", ["redelivered", "stale"])
def test_a_job_whose_worker_was_lost_is_taken_over_as_a_new_attempt(
    queued: TestClient, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    ran: list[int] = []

    def stub(task: Any) -> TaskOutcome:
        ran.append(task.job_id)
        return TaskOutcome(kind="input_error", message="stub outcome")

    monkeypatch.setattr(worker, "run_registration", stub)
    ctx = ctx_of(queued)
    job_id = job_ids(queued)[0]
    started = utcnow() - timedelta(seconds=3600 if why == "stale" else 1)
    set_job(queued, job_id, status=JobStatus.RUNNING.value, attempts=1, started_at=started)
    outcome = steps.run_job(
        ctx.writer,
        ctx.store,
        job_id,
        take_over_running=why == "redelivered",
        stale_after_s=600.0,
        max_attempts=3,
    )
    assert outcome == "input_error"
    assert ran == [job_id]
    row = job(queued, job_id)
    assert (row.status, row.attempts, row.error) == ("failed", 2, "stub outcome")
    with ctx.sessions() as session:
        actions = list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert actions[-2:] == ["requeued", "failed"]


def test_a_job_that_used_its_attempts_is_failed_instead_of_taken_over(
    queued: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker, "run_registration", lambda _: pytest.fail("ran"))
    ctx = ctx_of(queued)
    job_id = job_ids(queued)[0]
    set_job(queued, job_id, status=JobStatus.RUNNING.value, attempts=3, started_at=utcnow())
    outcome = steps.run_job(
        ctx.writer, ctx.store, job_id, take_over_running=True, stale_after_s=600.0, max_attempts=3
    )
    assert outcome == "not taken over"
    row = job(queued, job_id)
    assert (row.status, row.error_status) == ("failed", 500)
    assert "stopped unexpectedly 3 times" in (row.error or "")


def test_a_heartbeating_job_is_left_alone_and_a_silent_one_is_published_again_once(
    queued: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started long ago but beating: a live worker, not taken over. Silent for 20 s: stale."""
    monkeypatch.setattr(worker, "run_registration", lambda _: pytest.fail("ran"))
    ctx = ctx_of(queued)
    alive, silent = job_ids(queued)
    long_ago = utcnow() - timedelta(seconds=600)
    set_job(queued, alive, status="running", attempts=1, started_at=long_ago, heartbeat_at=utcnow())
    set_job(
        queued,
        silent,
        status="running",
        attempts=1,
        started_at=long_ago,
        heartbeat_at=utcnow() - timedelta(seconds=20),
    )
    run = {"take_over_running": False, "stale_after_s": 15.0, "max_attempts": 3}
    assert steps.run_job(ctx.writer, ctx.store, alive, **run) == "running elsewhere"
    broker = FlakyBroker(failures=0)
    jobs = QueueJobs(ctx.sessions, broker.publish, sweep_s=3600, stale_after_s=15.0, check_s=0.1)
    jobs.start()
    try:
        assert wait_until(lambda: silent in broker.published)
        time.sleep(0.5)  # several more checks: the same stale job is not published again
    finally:
        jobs.stop()
    assert broker.published.count(silent) == 1
    assert alive not in broker.published


def test_a_heartbeat_is_written_only_for_the_attempt_that_owns_the_job(queued: TestClient) -> None:
    from app.jobs.heartbeat import beat

    ctx = ctx_of(queued)
    job_id = job_ids(queued)[0]
    set_job(queued, job_id, status="running", attempts=2, started_at=utcnow())
    assert not beat(ctx.writer, job_id, 1)  # a worker whose attempt was taken over
    assert job(queued, job_id).heartbeat_at is None
    assert beat(ctx.writer, job_id, 2)
    assert job(queued, job_id).heartbeat_at is not None


def test_a_course_is_created_when_the_broker_refuses_its_planning_preparation(
    tmp_path: Path, sqlite_url: str, series: sf.Samples, caplog: pytest.LogCaptureFixture
) -> None:
    asked: list[str] = []

    def refuse(planning_sha256: str) -> None:
        asked.append(planning_sha256)
        raise ConnectionError("broker down")

    broker = FlakyBroker(failures=0)
    with TestClient(create_app(sf.make_settings(tmp_path, sqlite_url))) as client:
        ctx = ctx_of(client)
        ctx.jobs = QueueJobs(
            ctx.sessions,
            broker.publish,
            sweep_s=3600,
            stale_after_s=3600,
            publish_preparation=refuse,
        )
        ctx.jobs.start()
        try:
            with caplog.at_level(logging.WARNING, logger="app.jobs.dispatch"):
                created = client.post(
                    "/api/v1/courses",
                    headers=sf.add_api_key(client, "console-1"),
                    data={"patient_id": sf.PATIENT_ID},
                    files=sf.upload("planning", series.planning),
                )
                assert created.status_code == 201, created.text
                assert wait_until(lambda: asked == [created.json()["planning_content_sha256"]])
                ctx.jobs.enqueue(4242)  # the publisher thread is still at work
                assert wait_until(lambda: 4242 in broker.published)
        finally:
            ctx.jobs.stop()
            ctx.jobs = None
    assert "the course's first fraction prepares it" in caplog.text
    assert "broker down" not in caplog.text  # the reason's words may hold the broker's URL

"""Embedded mode: nothing is lost to a busy database, nothing stays ``running`` without a worker.

The report: with SQLite's write lock held for 40 s while a registration finished, the result was
lost and the job was still ``running`` four minutes later. Here the lock is held (another
connection's ``BEGIN IMMEDIATE``, as any writer would) from before the registration ends until
the service has failed to write the outcome; once it is released the fraction finishes.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import service_fixtures as sf
from service_fixtures import TestClient
from sqlalchemy import func, select, update

from app.db.models import AuditEvent, Job, RegistrationResult, utcnow
from app.jobs.pool import WorkerPool

pytestmark = pytest.mark.slow


@pytest.fixture
def client(tmp_path: Path, sqlite_url: str, warm_pool: WorkerPool) -> Iterator[TestClient]:
    settings = sf.make_settings(
        tmp_path, sqlite_url, start_workers=True, sqlite_busy_timeout_ms=300
    )
    with TestClient(sf.create_app(settings, pool=warm_pool)) as test_client:
        yield test_client


def post(client: TestClient, headers: dict[str, str], series: sf.Samples, index: int) -> Any:
    iso = series.isocenter
    response = client.post(
        "/api/v1/fractions",
        params={"wait": "false"},
        headers=headers,
        data={"patient_id": sf.PATIENT_ID, "isocenter": f"{iso.x_mm},{iso.y_mm},{iso.z_mm}"},
        files=sf.upload("mvct", series.mvcts[index]) + sf.upload("planning", series.planning),
    )
    assert response.status_code == 202, response.text
    return response.json()


def status(client: TestClient, headers: dict[str, str], fraction_id: int) -> str:
    body = client.get(f"/api/v1/fractions/{fraction_id}", headers=headers).json()
    return str(body["status"])


def wait_status(
    client: TestClient,
    headers: dict[str, str],
    fraction_id: int,
    wanted: set[str],
    timeout_s: float,
) -> str:
    deadline = time.monotonic() + timeout_s
    while (current := status(client, headers, fraction_id)) not in wanted:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return current


def results(client: TestClient, fraction_id: int) -> int:
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        query = select(func.count()).where(RegistrationResult.fraction_id == fraction_id)
        return int(session.scalar(query) or 0)


def test_a_result_finished_while_the_database_is_locked_is_kept_and_recorded_after(
    client: TestClient, series: sf.Samples, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.jobs")
    headers = sf.add_api_key(client, "console-1")
    fraction = post(client, headers, series, 0)
    assert wait_status(client, headers, fraction["id"], {"running", "done"}, 60) == "running"
    database = client.app.state.context.engine.url.database  # type: ignore[attr-defined]
    locker = sqlite3.connect(database, isolation_level=None, timeout=30)
    locker.execute("BEGIN IMMEDIATE")  # the write lock: every other writer now waits, then fails
    try:
        deadline = time.monotonic() + 90
        while "kept in memory" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status(client, headers, fraction["id"]) == "running"  # reads still work
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert "kept in memory" in caplog.text, "the outcome was never refused: the test proved nothing"
    assert wait_status(client, headers, fraction["id"], {"done", "failed"}, 90) == "done"
    assert results(client, fraction["id"]) == 1


def test_a_job_marked_running_that_no_worker_runs_is_resumed(
    client: TestClient, series: sf.Samples, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = client.app.state.context  # type: ignore[attr-defined]
    headers = sf.add_api_key(client, "console-1")
    monkeypatch.setattr(ctx.jobs, "_dispatch", lambda: None)  # hold the job back
    fraction = post(client, headers, series, 1)
    with ctx.writer.begin() as session:  # an attempt whose outcome went missing
        moved = session.execute(
            update(Job)
            .where(Job.fraction_id == fraction["id"], Job.status == "queued")
            .values(status="running", attempts=1, started_at=utcnow())
        )
        assert moved.rowcount == 1
    monkeypatch.undo()
    assert wait_status(client, headers, fraction["id"], {"done", "failed"}, 120) == "done"
    assert results(client, fraction["id"]) == 1
    with ctx.sessions() as session:
        reasons = [
            event.detail.get("reason")
            for event in session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "requeued", AuditEvent.entity_id == str(fraction["id"])
                )
            )
        ]
    assert reasons == ["marked running, but no worker was running it"]

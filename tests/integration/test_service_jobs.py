"""Registrations through the service with real warm workers: results, caching, crashes, restarts."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import service_fixtures as sf
from service_fixtures import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from app.config import Settings
from app.db import repository as repo
from app.db.models import AuditEvent, Job, JobStatus, RegistrationResult
from app.jobs.pool import WorkerPool
from registration.couch import couch_correction_6dof
from registration.frames import PatientPosition


def registering_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    return sf.make_settings(tmp_path, database_url, start_workers=True, **overrides)


@pytest.fixture
def client(tmp_path: Path, database_url: str, warm_pool: WorkerPool) -> Iterator[TestClient]:
    """The app with the shared warm workers, on SQLite and on PostgreSQL."""
    app = sf.create_app(registering_settings(tmp_path, database_url), pool=warm_pool)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def sqlite_client(tmp_path: Path, sqlite_url: str, warm_pool: WorkerPool) -> Iterator[TestClient]:
    """The same on SQLite only, for what does not depend on the database."""
    app = sf.create_app(registering_settings(tmp_path, sqlite_url), pool=warm_pool)
    with TestClient(app) as test_client:
        yield test_client


def post(client: TestClient, headers: dict[str, str], index: int, wait: bool = True) -> Any:
    return client.post(
        "/api/v1/fractions",
        params={"wait": str(wait).lower()},
        headers=headers,
        data={"patient_id": sf.PATIENT_ID, "isocenter": _iso_text(_series(client))},
        files=sf.upload("mvct", _series(client).mvcts[index])
        + sf.upload("planning", _series(client).planning),
    )


def _series(client: TestClient) -> sf.Samples:
    assert sf._samples is not None
    return sf._samples


def _iso_text(series: sf.Samples) -> str:
    iso = series.isocenter
    return f"{iso.x_mm},{iso.y_mm},{iso.z_mm}"


def audit_actions(client: TestClient) -> list[str]:
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def results_of(client: TestClient, fraction_id: int) -> int:
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        query = select(func.count()).where(RegistrationResult.fraction_id == fraction_id)
        return int(session.scalar(query) or 0)


def wait_for_status(
    client: TestClient,
    headers: dict[str, str],
    fraction_id: int,
    wanted: set[str],
    timeout_s: float,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = client.get(
            f"/api/v1/fractions/{fraction_id}", headers=headers
        ).json()
        if body["status"] in wanted or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_the_couch_correction_undoes_the_known_motion(
    client: TestClient, series: sf.Samples
) -> None:
    """MVCT 0 shows the anatomy moved by a known rigid motion; the correction must undo it."""
    console = sf.add_api_key(client, "console-1")
    response = post(client, console, 0)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "done" and body["attempts"] == 1
    expected = couch_correction_6dof(series.motions[0], series.isocenter, PatientPosition.HFS)
    got = body["couch_correction"]
    for axis in ("lateral_mm", "longitudinal_mm", "vertical_mm"):
        assert got[axis] == pytest.approx(getattr(expected, axis), abs=1.0), (axis, got)
    for axis in ("pitch_deg", "roll_deg", "yaw_deg"):
        assert got[axis] == pytest.approx(getattr(expected, axis), abs=0.5), (axis, got)
    assert body["exceeds_margin"] is (expected.max_abs_translation_mm() > 3.0)
    assert len(body["planning_to_daily_lps"]) == 4 and body["quality"]["iterations"] > 0
    assert body["trusted"] is True
    assert client.get(f"/api/v1/fractions/{body['id']}", headers=console).json() == body
    log = client.get(f"/api/v1/patients/{sf.PATIENT_ID}/fractions", headers=console).json()
    assert log["fractions"][0]["couch_correction"] == got
    assert audit_actions(client)[-3:] == ["course_created", "received", "registered"]
    again = post(client, console, 0)
    assert again.status_code == 200 and again.json() == body


def test_the_next_fraction_reuses_the_prepared_planning_ct(
    sqlite_client: TestClient, series: sf.Samples
) -> None:
    console = sf.add_api_key(sqlite_client, "console-1")
    assert post(sqlite_client, console, 1).status_code == 201
    assert post(sqlite_client, console, 2).status_code == 201
    with sqlite_client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "registered").order_by(AuditEvent.id)
        ).all()
    assert events[-1].detail["planning_cache_hit"] is True


def test_wait_false_answers_202_and_the_result_arrives_later(
    sqlite_client: TestClient, series: sf.Samples
) -> None:
    console = sf.add_api_key(sqlite_client, "console-1")
    response = post(sqlite_client, console, 3, wait=False)
    assert response.status_code == 202
    assert response.json()["status"] in ("queued", "running")
    body = wait_for_status(sqlite_client, console, response.json()["id"], {"done", "failed"}, 120)
    assert body["status"] == "done" and body["couch_correction"] is not None


def test_a_worker_killed_mid_job_is_replaced_and_the_job_runs_again_once(
    sqlite_client: TestClient, series: sf.Samples, warm_pool: WorkerPool
) -> None:
    console = sf.add_api_key(sqlite_client, "console-1")
    fraction_id = post(sqlite_client, console, 4, wait=False).json()["id"]
    deadline = time.monotonic() + 60
    while not any(slot.busy for slot in warm_pool.slots) and time.monotonic() < deadline:
        time.sleep(0.01)  # kill as soon as the registration has started
    busy = [slot for slot in warm_pool.slots if slot.busy]
    assert len(busy) == 1 and busy[0].pid is not None
    os.kill(busy[0].pid, signal.SIGKILL)
    body = wait_for_status(sqlite_client, console, fraction_id, {"done", "failed"}, 180)
    assert body["status"] == "done", body
    assert body["attempts"] == 2
    assert results_of(sqlite_client, fraction_id) == 1
    assert "requeued" in audit_actions(sqlite_client)
    assert warm_pool.wait_warm(120)


def test_jobs_a_dead_service_left_running_are_run_again_at_start(
    tmp_path: Path, database_url: str, series: sf.Samples, warm_pool: WorkerPool
) -> None:
    cold = sf.make_settings(tmp_path, database_url)  # no workers: the job stays queued
    with TestClient(sf.create_app(cold)) as client:
        console = sf.add_api_key(client, "console-1")
        fraction_id = post(client, console, 5).json()["id"]
        with client.app.state.context.writer.begin() as session:  # type: ignore[attr-defined]
            # what a service killed during the registration leaves behind
            session.execute(update(Job).values(status="running", attempts=1))
    warm = registering_settings(tmp_path, database_url)
    with TestClient(sf.create_app(warm, pool=warm_pool)) as client:
        body = wait_for_status(client, console, fraction_id, {"done", "failed"}, 120)
        assert body["status"] == "done" and body["attempts"] == 2
        assert results_of(client, fraction_id) == 1
        assert audit_actions(client).count("requeued") == 1


def test_a_job_interrupted_too_often_fails_with_a_reason_instead_of_looping(
    tmp_path: Path, sqlite_url: str, series: sf.Samples, warm_pool: WorkerPool
) -> None:
    cold = sf.make_settings(tmp_path, sqlite_url)
    with TestClient(sf.create_app(cold)) as client:
        console = sf.add_api_key(client, "console-1")
        fraction_id = post(client, console, 6).json()["id"]
        with client.app.state.context.writer.begin() as session:  # type: ignore[attr-defined]
            session.execute(update(Job).values(status="running", attempts=3))
    warm = registering_settings(tmp_path, sqlite_url)
    with TestClient(sf.create_app(warm, pool=warm_pool)) as client:
        body = client.get(f"/api/v1/fractions/{fraction_id}", headers=console).json()
        assert body["status"] == "failed" and "interrupted 3 times" in body["error"]
        again = post(client, console, 6)
        assert again.status_code == 500 and "interrupted 3 times" in again.json()["detail"]
        assert results_of(client, fraction_id) == 0


def test_the_database_refuses_a_second_result_and_a_stale_completion(
    client: TestClient, series: sf.Samples
) -> None:
    console = sf.add_api_key(client, "console-1")
    fraction_id = post(client, console, 7).json()["id"]
    ctx = client.app.state.context  # type: ignore[attr-defined]
    with ctx.sessions() as session:
        first = repo.result_for_fraction(session, fraction_id)
        assert first is not None
        job_id = session.scalar(select(Job.id).where(Job.fraction_id == fraction_id))
    with ctx.writer() as session:
        assert not repo.finish_job(session, job_id, attempt=1, status=JobStatus.DONE)
        session.add(
            RegistrationResult(
                fraction_id=fraction_id,
                result=first.result,
                lateral_mm=0.0,
                longitudinal_mm=0.0,
                vertical_mm=0.0,
                pitch_deg=0.0,
                roll_deg=0.0,
                yaw_deg=0.0,
                trusted=True,
            )
        )
        with pytest.raises(IntegrityError):
            session.commit()
    assert results_of(client, fraction_id) == 1

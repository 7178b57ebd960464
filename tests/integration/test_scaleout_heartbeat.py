"""A queue worker killed mid-registration: another worker takes the job over within seconds.

The report: a worker killed in the middle of a registration was recovered only after about
400 s (Redis keeps the unacknowledged message until its visibility timeout, above the job time
limit), while the patient is on the couch. Workers now heartbeat (``jobs.heartbeat_at``); a job
whose worker has been silent for 15 s is published again by the API and taken over.

One deployment per broker: one API replica in queue mode on PostgreSQL, two ``mvct-guide worker``
processes (one registration process each). The whole worker that runs the registration (its
main process and its pool process) is SIGKILLed — a host or container lost — and the fraction must
finish on the other worker. The time from the kill to ``done`` is printed (``-s``); the issue's
target is 30 s. The test waits at most 120 s, far below the 360 s and more it took before.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import scaleout_fixtures as so
import service_fixtures as sf
from sqlalchemy import func, select

from app.db.engine import make_engine, make_session_factory, make_writer_factory
from app.db.models import AuditEvent, Job, RegistrationResult, Role
from app.services.accounts import create_api_key

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.broker]


@dataclass
class Deployment:
    api: so.ApiServer
    workers: list[so.QueueWorker]
    key: str
    sessions: Any


@pytest.fixture(params=["redis", "rabbitmq"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    broker = request.param
    if not so.broker_reachable(broker) or not sf.postgres_reachable():
        pytest.skip(f"{broker} on 127.0.0.1 and PostgreSQL are needed")
    database_url = sf.postgres().new_database()
    broker_url = so.BROKERS[broker]
    data_dir = tmp_path / "data"
    queue_name = so.new_queue_name()
    engine = make_engine(database_url)
    with make_writer_factory(engine).begin() as session:
        key = create_api_key(session, "console", Role.CONSOLE, "test")
    processes: list[so.Process] = []
    try:
        api = so.ApiServer(
            data_dir, database_url, broker_url, tmp_path / "api.log", queue_name=queue_name
        )
        processes.append(api)
        workers = [
            so.QueueWorker(
                data_dir, database_url, broker_url, 1, tmp_path / f"worker-{i}.log", queue_name
            )
            for i in range(2)
        ]
        processes.extend(workers)
        api.wait_ready()
        for worker in workers:
            worker.wait_warm()
        yield Deployment(api, workers, key, make_session_factory(engine))
    finally:
        for process in processes:
            process.stop()
        so.purge_queue(broker_url, queue_name)
        engine.dispose()
        sf.postgres().drop(database_url)


def test_a_fraction_whose_worker_was_killed_finishes_on_another_worker(
    deployment: Deployment, series: sf.Samples
) -> None:
    dep = deployment
    accepted = so.post_fraction(
        dep.api.base_url, dep.key, sf.PATIENT_ID, series.mvcts[0], planning=series.planning,
        wait=False,
    )  # fmt: skip
    assert accepted.status_code == 202, accepted.text
    fraction_id = accepted.json()["id"]
    with dep.sessions() as session:
        job_id = session.scalars(select(Job.id).where(Job.fraction_id == fraction_id)).one()
    running = re.compile(rf"job {job_id}: attempt 1 running in process (\d+)")
    deadline = time.monotonic() + 120
    busy = None
    while busy is None and time.monotonic() < deadline:
        busy = next((w for w in dep.workers if running.search(w.output())), None)
        time.sleep(0.02)
    assert busy is not None, [w.output()[-2000:] for w in dep.workers]
    pid = int(running.search(busy.output()).group(1))  # type: ignore[union-attr]
    assert pid in busy.children()
    assert status(dep, fraction_id)["status"] == "running"
    busy.kill()  # the worker and its registration process, at once
    killed_at = time.monotonic()
    body = status(dep, fraction_id)
    while body["status"] not in ("done", "failed") and time.monotonic() < killed_at + 120:
        time.sleep(0.2)
        body = status(dep, fraction_id)
    elapsed_s = time.monotonic() - killed_at
    print(f"\nkill → done: {elapsed_s:.1f} s")
    assert body["status"] == "done", body
    assert body["attempts"] == 2
    survivor = next(w for w in dep.workers if w is not busy)
    assert re.search(rf"job {job_id}: attempt 2 running in process", survivor.output())
    with dep.sessions() as session:
        results = select(func.count()).where(RegistrationResult.fraction_id == fraction_id)
        assert session.scalar(results) == 1
        requeued = select(func.count()).where(
            AuditEvent.action == "requeued", AuditEvent.entity_id == str(fraction_id)
        )
        assert session.scalar(requeued) == 1


def status(dep: Deployment, fraction_id: int) -> dict[str, Any]:
    response = httpx.get(
        f"{dep.api.base_url}/api/v1/fractions/{fraction_id}",
        headers={"X-API-Key": dep.key},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body

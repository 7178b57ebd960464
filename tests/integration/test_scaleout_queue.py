"""Scale-out on real processes: two API replicas, a Celery worker, PostgreSQL, Redis or RabbitMQ.

One deployment per broker (starting the worker's warm processes costs seconds): two
``mvct-guide serve`` replicas with ``MVCT_GUIDE_QUEUE=celery`` on one PostgreSQL database and one
data directory, and one ``mvct-guide worker`` (two registration processes on Redis, which also
runs the fault and load tests; one on RabbitMQ). Then:

1. the same fractions posted to both replicas at once: each stored once, registered once;
2. (Redis) the worker process running a registration killed (SIGKILL): the broker delivers the
   job again, another process takes it over, and the fraction has exactly one result;
3. (Redis) a replica killed and restarted while a console uploads: the console's retries of the
   same MVCT are idempotent, nothing is lost or duplicated;
4. (Redis) the short load test: 10 consoles posting for 20 s; no request lost, no duplicate,
   no 5xx (the numbers are in ``bench/bench_load.py``'s table, not asserted).
"""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import scaleout_fixtures as so
import service_fixtures as sf
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.engine import make_engine, make_session_factory, make_writer_factory
from app.db.models import AuditEvent, Fraction, ImageSeries, Job, RegistrationResult, Role
from app.services.accounts import create_api_key

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.broker]


@dataclass
class Deployment:
    broker: str
    database_url: str
    data_dir: Path
    work: Path
    keys: list[str]
    engine: Engine
    sessions: sessionmaker[Session]
    apis: list[so.ApiServer] = field(default_factory=list)
    worker: so.QueueWorker | None = None

    def count(self, query: Any) -> int:
        with self.sessions() as session:
            return int(session.scalar(query) or 0)

    def fraction_ids(self) -> set[int]:
        with self.sessions() as session:
            return set(session.scalars(select(Fraction.id)))

    def status(self, fraction_id: int) -> dict[str, Any]:
        response = httpx.get(
            f"{self.apis[0].base_url}/api/v1/fractions/{fraction_id}",
            headers={"X-API-Key": self.keys[0]},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def assert_each_fraction_registered_once(self) -> None:
        fractions = self.count(select(func.count()).select_from(Fraction))
        assert self.count(select(func.count()).select_from(RegistrationResult)) == fractions
        assert self.count(select(func.count()).where(Job.status == "done")) == fractions
        per_fraction = (
            select(func.count())
            .select_from(RegistrationResult)
            .group_by(RegistrationResult.fraction_id)
            .having(func.count() > 1)
        )
        with self.sessions() as session:
            assert session.execute(per_fraction).first() is None

    def stored_and_recorded_series(self) -> tuple[set[str], set[str]]:
        with self.sessions() as session:
            recorded = set(session.scalars(select(ImageSeries.content_sha256)))
        stored = {p.name for p in (self.data_dir / "images").glob("??/*") if p.is_dir()}
        return stored, recorded


BOTH_BROKERS = pytest.mark.parametrize("deployment", ["redis", "rabbitmq"], indirect=True)
REDIS_ONLY = pytest.mark.parametrize("deployment", ["redis"], indirect=True)


@pytest.fixture(scope="module")
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    broker = request.param
    if not so.broker_reachable(broker) or not sf.postgres_reachable():
        pytest.skip(f"{broker} on 127.0.0.1 and PostgreSQL are needed")
    work = tmp_path_factory.mktemp(f"scaleout-{broker}")
    database_url = sf.postgres().new_database()
    broker_url = so.BROKERS[broker]
    data_dir = work / "data"
    queue_name = so.new_queue_name()
    engine = make_engine(database_url)
    with make_writer_factory(engine).begin() as session:
        keys = [create_api_key(session, f"console-{i}", Role.CONSOLE, "test") for i in range(10)]
    dep = Deployment(
        broker, database_url, data_dir, work, keys, engine, make_session_factory(engine)
    )
    try:
        processes = 2 if broker == "redis" else 1  # Redis runs the fault and load tests too
        dep.worker = so.QueueWorker(
            data_dir, database_url, broker_url, processes, work / "worker.log", queue_name
        )
        dep.apis = [
            so.ApiServer(
                data_dir, database_url, broker_url, work / f"api-{i}.log", queue_name=queue_name
            )
            for i in range(2)
        ]
        for api in dep.apis:
            api.wait_ready()
        dep.worker.wait_warm()
        yield dep
    finally:
        for api in dep.apis:
            api.stop()
        if dep.worker is not None:
            dep.worker.stop()
        so.purge_queue(broker_url, queue_name)
        engine.dispose()
        sf.postgres().drop(database_url)


@BOTH_BROKERS
def test_two_replicas_given_the_same_fractions_store_and_register_each_once(
    deployment: Deployment, series: sf.Samples
) -> None:
    dep = deployment
    mvcts = series.mvcts[:5]
    posts = [
        (api, key, mvct) for mvct in mvcts for api, key in zip(dep.apis, dep.keys, strict=False)
    ]
    with ThreadPoolExecutor(len(posts)) as pool:
        responses = list(
            pool.map(
                lambda p: so.post_fraction(
                    p[0].base_url, p[1], sf.PATIENT_ID, p[2], planning=series.planning
                ),
                posts,
            )
        )
    for response in responses:
        assert response.status_code in (200, 201), response.text
        assert response.json()["status"] == "done"
    ids = [r.json()["id"] for r in responses]
    assert ids[0::2] == ids[1::2], "the two replicas disagree about a fraction"
    assert len(set(ids)) == len(mvcts)
    assert sorted(r.status_code for r in responses).count(201) == len(mvcts)
    assert dep.count(select(func.count()).select_from(Fraction)) == len(mvcts)
    assert dep.count(select(func.max(Job.attempts))) == 1
    dep.assert_each_fraction_registered_once()
    stored, recorded = dep.stored_and_recorded_series()
    assert stored == recorded
    assert list((dep.data_dir / "tmp").iterdir()) == []
    logs = " ".join(process.output() for process in [*dep.apis, dep.worker] if process)
    assert "registration worker process" in logs  # the logs were read
    for key in dep.keys:
        assert key.rsplit("_", 1)[1] not in logs, "an API key was logged"
    assert "guest:guest" not in logs, "the broker password was logged"


@REDIS_ONLY
def test_a_worker_process_killed_mid_registration_loses_nothing(
    deployment: Deployment, series: sf.Samples
) -> None:
    dep = deployment
    assert dep.worker is not None
    accepted = so.post_fraction(
        dep.apis[1].base_url,
        dep.keys[2],
        sf.PATIENT_ID,
        series.mvcts[6],
        planning=series.planning,
        wait=False,
    )
    assert accepted.status_code == 202, accepted.text
    fraction_id = accepted.json()["id"]
    with dep.sessions() as session:
        job_id = session.scalars(select(Job.id).where(Job.fraction_id == fraction_id)).one()
    running = re.compile(rf"job {job_id}: attempt 1 running in process (\d+)")
    deadline = time.monotonic() + 60
    while not (found := running.search(dep.worker.output())) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert found, dep.worker.output()[-3000:]
    registering = int(found.group(1))
    assert registering in dep.worker.children()
    assert dep.status(fraction_id)["status"] == "running"
    os.kill(registering, signal.SIGKILL)  # the sibling process takes the redelivered job
    deadline = time.monotonic() + 120
    body = dep.status(fraction_id)
    while body["status"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
        body = dep.status(fraction_id)
    assert body["status"] == "done", body
    assert body["attempts"] == 2
    results = select(func.count()).where(RegistrationResult.fraction_id == fraction_id)
    assert dep.count(results) == 1
    requeued = select(func.count()).where(
        AuditEvent.action == "requeued", AuditEvent.entity_id == str(fraction_id)
    )
    assert dep.count(requeued) == 1
    dep.assert_each_fraction_registered_once()


@REDIS_ONLY
def test_a_replica_restarted_during_uploads_loses_and_duplicates_nothing(
    deployment: Deployment, series: sf.Samples
) -> None:
    dep = deployment
    mvcts = so.distinct_copies(series.mvcts[7], dep.work / "restart", 4, "restart")
    before = dep.fraction_ids()
    api = dep.apis[0]
    answers: dict[Path, int] = {}
    retried = threading.Event()

    def console() -> None:
        for mvct in mvcts:
            deadline = time.monotonic() + 120
            while True:  # a console's retry: the same MVCT again until it has an answer
                try:
                    response = so.post_fraction(
                        api.base_url, dep.keys[3], sf.PATIENT_ID, mvct, planning=series.planning
                    )
                except httpx.TransportError:
                    retried.set()
                    assert time.monotonic() < deadline, "the replica did not come back"
                    time.sleep(0.3)
                    continue
                assert response.status_code in (200, 201), response.text
                answers[mvct] = response.json()["id"]
                break

    thread = threading.Thread(target=console)
    thread.start()
    try:
        while len(answers) < 2 and thread.is_alive():
            time.sleep(0.05)
        api.kill()  # mid-upload or mid-wait: the console sees the connection drop
        dep.apis[0] = api = api.restarted()
        api.wait_ready()
    finally:
        thread.join(300)
    assert not thread.is_alive()
    assert retried.is_set(), "the kill did not interrupt the console"
    assert len(answers) == len(mvcts)
    new = dep.fraction_ids() - before
    assert set(answers.values()) == new
    for fraction_id in new:
        assert dep.status(fraction_id)["status"] == "done"
    dep.assert_each_fraction_registered_once()


@REDIS_ONLY
def test_ten_consoles_posting_for_20_seconds_lose_nothing(
    deployment: Deployment, series: sf.Samples
) -> None:
    """The short load test (the long one, with its numbers, is bench/bench_load.py)."""
    dep = deployment
    first = so.post_fraction(
        dep.apis[0].base_url, dep.keys[0], sf.PATIENT_ID, series.mvcts[8], planning=series.planning
    )
    assert first.status_code in (200, 201), first.text
    course_id = first.json()["course_id"]
    mvcts = so.distinct_copies(series.mvcts[9], dep.work / "load", 60, "load")
    before = dep.fraction_ids()
    lock = threading.Lock()
    results: list[tuple[Path, int, int]] = []  # (mvct, status, fraction id)
    stop_at = time.monotonic() + 20.0

    def console(index: int) -> None:
        rng = random.Random(index)
        api = dep.apis[index % 2]
        while time.monotonic() < stop_at:
            with lock:
                if not mvcts:
                    return
                mvct = mvcts.pop()
            response = so.post_fraction(
                api.base_url, dep.keys[index], sf.PATIENT_ID, mvct, course_id=course_id
            )
            is_json = response.headers.get("content-type", "").startswith("application/json")
            body = response.json() if is_json else {}
            with lock:
                results.append((mvct, response.status_code, body.get("id", -1)))
            time.sleep(rng.uniform(0.5, 2.0))

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(console, range(10)))
    assert len(results) >= 10
    assert [status for _, status, _ in results if status >= 500] == []
    assert {status for _, status, _ in results} <= {200, 201}
    ids = [fraction_id for _, _, fraction_id in results]
    assert len(set(ids)) == len(results), "a fraction was answered for two MVCTs"
    assert dep.fraction_ids() - before == set(ids)
    dep.assert_each_fraction_registered_once()
    stored, recorded = dep.stored_and_recorded_series()
    assert recorded <= stored, "a stored series has no files"

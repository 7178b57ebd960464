"""Queue mode: creating a course has a worker prepare its planning CT before the first fraction.

One deployment on real processes: one ``mvct-guide serve`` replica with ``MVCT_GUIDE_QUEUE=celery``
on PostgreSQL and Redis, one ``mvct-guide worker`` with two registration processes. A course is
created (``POST /api/v1/courses``); one worker process takes the preparation message, prepares
the planning CT into its memory and writes the prepared file to the shared data directory. Then
two fractions of the course are posted at once: the one that runs in that process finds the
planning CT in memory (``planning_cache_hit``), one that runs in the other process loads the
prepared file; neither prepares it from DICOM. The preparation message sent again changes
nothing, and a bad one is logged without harming the worker.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import scaleout_fixtures as so
import service_fixtures as sf
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.engine import make_engine, make_session_factory, make_writer_factory
from app.db.models import AuditEvent, Job, Role
from app.jobs.celery_app import make_celery, preparation_publisher
from app.services.accounts import create_api_key

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.broker]

READY = re.compile(r"planning ([0-9a-f]{12}) ready in process (\d+) \(from (\w+), ([\d.]+) s\)(.*)")


@dataclass
class Deployment:
    api: so.ApiServer
    worker: so.QueueWorker
    key: str
    sessions: sessionmaker[Session]
    data_dir: Path
    work: Path
    publish_preparation: Any

    def preparations(self, sha256: str) -> list[tuple[int, str, str]]:
        """(process, source, rest of the line) of every preparation of ``sha256`` logged."""
        return [
            (int(m.group(2)), m.group(3), m.group(5))
            for m in READY.finditer(self.worker.output())
            if m.group(1) == sha256[:12]
        ]

    def wait_for_log(self, pattern: str, timeout_s: float = 60.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.worker.running(), self.worker.output()[-4000:]
            if found := re.search(pattern, self.worker.output()):
                return found
            time.sleep(0.1)
        raise AssertionError(
            f"{pattern!r} not in the worker's log:\n{self.worker.output()[-4000:]}"
        )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if not so.broker_reachable("redis") or not sf.postgres_reachable():
        pytest.skip("Redis on 127.0.0.1 and PostgreSQL are needed")
    work = tmp_path_factory.mktemp("scaleout-planning")
    database_url = sf.postgres().new_database()
    broker_url = so.BROKERS["redis"]
    data_dir = work / "data"
    queue_name = so.new_queue_name()
    engine = make_engine(database_url)
    with make_writer_factory(engine).begin() as session:
        key = create_api_key(session, "console", Role.CONSOLE, "test")
    celery = make_celery(
        Settings(queue="celery", broker_url=broker_url, queue_name=queue_name, data_dir=data_dir)
    )
    processes: list[so.Process] = []
    try:
        worker = so.QueueWorker(
            data_dir, database_url, broker_url, 2, work / "worker.log", queue_name
        )
        processes.append(worker)
        api = so.ApiServer(
            data_dir, database_url, broker_url, work / "api.log", queue_name=queue_name
        )
        processes.append(api)
        api.wait_ready()
        worker.wait_warm()
        yield Deployment(
            api,
            worker,
            key,
            make_session_factory(engine),
            data_dir,
            work,
            preparation_publisher(celery, queue_name),
        )
    finally:
        for process in processes:
            process.stop()
        so.purge_queue(broker_url, queue_name)
        celery.close()
        engine.dispose()
        sf.postgres().drop(database_url)


def create_course(dep: Deployment, planning: Path, isocenter: str) -> dict[str, Any]:
    response = httpx.post(
        f"{dep.api.base_url}/api/v1/courses",
        headers={"X-API-Key": dep.key},
        data={"patient_id": sf.PATIENT_ID, "isocenter": isocenter},
        files=so.upload("planning", planning),
        timeout=120,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def registered(dep: Deployment, fraction_id: int) -> tuple[int, dict[str, Any]]:
    """(worker process, audit detail) of the fraction's registration."""
    with dep.sessions() as session:
        job_id = session.scalars(select(Job.id).where(Job.fraction_id == fraction_id)).one()
        detail = session.scalars(
            select(AuditEvent.detail).where(
                AuditEvent.action == "registered", AuditEvent.entity_id == str(fraction_id)
            )
        ).one()
    found = re.search(rf"job {job_id}: attempt 1 running in process (\d+)", dep.worker.output())
    assert found, dep.worker.output()[-3000:]
    return int(found.group(1)), dict(detail)


def test_a_new_courses_planning_ct_is_prepared_by_a_worker_before_its_first_fractions(
    deployment: Deployment, series: sf.Samples
) -> None:
    dep = deployment
    planning = so.distinct_copies(series.planning, dep.work, 1, "planning")[0]
    iso = series.isocenter
    course = create_course(dep, planning, f"{iso.x_mm},{iso.y_mm},{iso.z_mm}")
    sha256 = course["planning_content_sha256"]

    dep.wait_for_log(rf"planning {sha256[:12]} ready in process")
    [(preparer, source, note)] = dep.preparations(sha256)
    assert (source, note) == ("dicom", "; prepared file written")
    root = dep.data_dir / "planning-cache" / sha256
    assert [p.name.startswith("prepared-") for p in root.iterdir()] == [True]

    def post(mvct: Path) -> httpx.Response:
        return so.post_fraction(
            dep.api.base_url, dep.key, sf.PATIENT_ID, mvct, course_id=course["id"]
        )

    with ThreadPoolExecutor(2) as pool:  # both at once: one in each worker process, usually
        responses = list(pool.map(post, series.mvcts[:2]))
    for response in responses:
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "done"
    runs = sorted(
        (registered(dep, r.json()["id"]) for r in responses), key=lambda r: r[1]["job_id"]
    )
    print(f"\nprepared in process {preparer}; fractions ran in", [process for process, _ in runs])
    holders = {preparer}
    for process, detail in runs:
        expected = "memory" if process in holders else "prepared_file"
        assert detail["planning_source"] == expected, (process, detail, preparer)
        assert detail["planning_cache_hit"] is (expected == "memory")
        holders.add(process)
    assert any(detail["planning_cache_hit"] for _, detail in runs)

    # the same preparation again: nothing prepared or written twice
    for _ in range(2):
        dep.publish_preparation(sha256)
    deadline = time.monotonic() + 60
    while len(dep.preparations(sha256)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    again = dep.preparations(sha256)[1:]
    assert len(again) == 2, dep.worker.output()[-3000:]
    assert all(source in ("memory", "prepared_file") and not note for _, source, note in again)
    assert [p.name.startswith("prepared-") for p in root.iterdir()] == [True]


def test_a_preparation_that_fails_is_logged_and_the_worker_keeps_serving(
    deployment: Deployment, series: sf.Samples
) -> None:
    dep = deployment
    dep.publish_preparation("0" * 64)  # no such planning CT in the data directory
    dep.publish_preparation("../../etc")
    dep.wait_for_log(r"planning 000000000000 not prepared in process \d+ \(its first fraction")
    dep.wait_for_log(r"refused to prepare '\.\./\.\./etc'")
    response = so.post_fraction(
        dep.api.base_url, dep.key, sf.PATIENT_ID, series.mvcts[2], planning=series.planning
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "done"

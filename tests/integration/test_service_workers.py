"""Warm workers as a person waiting at the console sees them: readiness, a dead worker replaced
in the background (with two workers, and with one: then the service is not ready until the
replacement is warm), a new course's planning CT prepared before its first fraction."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import service_fixtures as sf
from service_fixtures import TestClient
from sqlalchemy import select

from app.db.models import AuditEvent
from app.jobs.pool import WorkerPool
from registration.dicom_series import read_ct_series
from registration.dicom_write import write_ct_series

pytestmark = pytest.mark.slow


@pytest.fixture
def client(tmp_path: Path, sqlite_url: str, warm_pool: WorkerPool) -> Iterator[TestClient]:
    settings = sf.make_settings(tmp_path, sqlite_url, start_workers=True)
    with TestClient(sf.create_app(settings, pool=warm_pool)) as test_client:
        yield test_client


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def iso_text(series: sf.Samples) -> str:
    iso = series.isocenter
    return f"{iso.x_mm},{iso.y_mm},{iso.z_mm}"


def post_fraction(
    client: TestClient, headers: dict[str, str], series: sf.Samples, **kw: Any
) -> Any:
    planning = kw.pop("planning", series.planning)
    return client.post(
        "/api/v1/fractions",
        headers=headers,
        data={"patient_id": sf.PATIENT_ID, "isocenter": iso_text(series)},
        files=sf.upload("mvct", series.mvcts[kw.pop("index")]) + sf.upload("planning", planning),
    )


def cache_hits(client: TestClient) -> list[bool]:
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "registered").order_by(AuditEvent.id)
        ).all()
    return [bool(e.detail["planning_cache_hit"]) for e in events]


def test_a_new_courses_planning_ct_is_prepared_in_a_worker_before_its_first_fraction(
    client: TestClient, series: sf.Samples, warm_pool: WorkerPool, tmp_path: Path
) -> None:
    # a planning CT no worker has seen: the sample's image written again with new UIDs
    planning = tmp_path / "new-planning"
    volume = read_ct_series(series.planning)
    write_ct_series(
        volume.image, planning, patient_position=volume.patient_position, patient_id=sf.PATIENT_ID
    )
    assert wait_until(lambda: not any(s.busy for s in warm_pool.slots), 120)
    cached_before = {sha for s in warm_pool.slots for sha in s.cached_plannings}
    headers = sf.add_api_key(client, "console-1")
    created = client.post(
        "/api/v1/courses",
        headers=headers,
        data={"patient_id": sf.PATIENT_ID, "isocenter": iso_text(series)},
        files=sf.upload("planning", planning),
    )
    assert created.status_code == 201, created.text

    def prepared() -> bool:
        cached = {sha for s in warm_pool.slots for sha in s.cached_plannings}
        return bool(cached - cached_before)

    assert wait_until(prepared, 120), "no worker prepared the new course's planning CT"
    root = tmp_path / "data" / "planning-cache" / created.json()["planning_content_sha256"]
    assert [p.name.startswith("prepared-") for p in root.iterdir()] == [True], "no prepared file"
    response = post_fraction(client, headers, series, index=5, planning=planning)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "done"
    assert cache_hits(client) == [True]  # the course's first fraction found it prepared


def test_a_killed_worker_is_replaced_in_the_background_while_the_other_serves(
    client: TestClient, series: sf.Samples, warm_pool: WorkerPool
) -> None:
    assert warm_pool.wait_warm(300)
    assert wait_until(lambda: not any(s.busy for s in warm_pool.slots), 120)
    assert client.get("/readyz").json()["workers_warm"] == 2
    victim = warm_pool.slots[0].pid
    assert victim is not None
    os.kill(victim, signal.SIGKILL)

    def one_warm() -> bool:
        return client.get("/readyz").json()["workers_warm"] == 1

    assert wait_until(one_warm, 10), "the dead worker was still counted as warm"
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json()  # the other worker can take a job
    headers = sf.add_api_key(client, "console-1")
    response = post_fraction(client, headers, series, index=6)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "done"

    def recovered() -> bool:
        return client.get("/readyz").json()["workers_warm"] == 2

    assert wait_until(recovered, 240), "the replacement worker did not warm up"
    pids = warm_pool.worker_pids()
    assert victim not in pids and None not in pids


def process_gone(pid: int) -> bool:
    """No such process, or only its exit status left for a parent that is gone too."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_with_one_worker_readyz_is_503_from_its_death_until_its_replacement_is_warm(
    tmp_path: Path, sqlite_url: str, series: sf.Samples
) -> None:
    settings = sf.make_settings(tmp_path, sqlite_url, start_workers=True, workers=1)
    with TestClient(sf.create_app(settings)) as client:
        pool: WorkerPool = client.app.state.context.pool  # type: ignore[attr-defined]
        assert wait_until(lambda: client.get("/readyz").status_code == 200, 300)
        ready = client.get("/readyz").json()
        assert (ready["workers_configured"], ready["workers_warm"]) == (1, 1)
        victim = pool.slots[0].pid
        assert victim is not None

        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        assert wait_until(lambda: client.get("/readyz").status_code == 503, 10)
        not_ready = client.get("/readyz").json()
        assert (not_ready["status"], not_ready["workers_warm"]) == ("not ready", 0)
        assert wait_until(lambda: client.get("/readyz").status_code == 200, 300), (
            "the replacement worker did not warm up"
        )
        ready_after_s = time.monotonic() - killed_at
        print(f"\none worker: ready again {ready_after_s:.1f} s after it was killed")
        assert client.get("/readyz").json()["workers_warm"] == 1
        replacement = pool.slots[0].pid
        assert replacement is not None and replacement != victim

        response = post_fraction(client, sf.add_api_key(client, "console-1"), series, index=4)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "done"
    assert wait_until(lambda: process_gone(victim) and process_gone(replacement), 30), (
        "a worker process outlived the service"
    )

"""A real ``mvct-guide serve`` process: concurrency, a crash mid-registration, the restart.

One scenario per database, because starting a server with warm workers costs ~15 s:

1. 8 fractions posted at once by 4 consoles (4 API keys), plus 2 repeats: all stored, none lost,
   none duplicated; the web process never loads ITK (only its workers do);
2. the sample fraction is posted, the whole service is killed (SIGKILL, workers included) while
   its registration runs, and started again: the job is run again and the fraction ends up with
   exactly one result.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import service_fixtures as sf
from sqlalchemy import func, select

from app.db.engine import make_engine, make_session_factory, make_writer_factory
from app.db.migrate import upgrade
from app.db.models import AuditEvent, Fraction, Job, RegistrationResult, Role
from app.services.accounts import create_api_key

SAMPLES = sf.PROJECT_ROOT / "sample_images"


class Server:
    """``python -m app.cli serve`` in its own process group (so its workers die with it)."""

    def __init__(self, data_dir: Path, database_url: str, workers: int, log: Path) -> None:
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "MVCT_GUIDE_WORKERS": str(workers)}
        self.log = log
        self._log_file = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port),
             "--data-dir", str(data_dir), "--database-url", database_url],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self, timeout_s: float = 240.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited:\n{self.log.read_text()}"
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"server not ready in time:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL the whole process group: the service and its worker processes."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self._log_file.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log_file.close()

    def children(self) -> list[int]:
        """Child processes, whichever thread started them."""
        tasks = Path(f"/proc/{self.process.pid}/task").glob("*/children")
        return sorted({int(pid) for task in tasks for pid in task.read_text().split()})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _all_dead(pids: list[int], timeout_s: float = 10.0) -> bool:
    """True once none of ``pids`` runs any more (gone, or a zombie waiting to be reaped)."""
    deadline = time.monotonic() + timeout_s
    while True:
        running = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                continue
            if state not in ("Z", "X"):
                running.append(pid)
        if not running:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _loads_itk(pid: int) -> bool:
    return "/itk/" in Path(f"/proc/{pid}/maps").read_text()


def _post(
    base_url: str, key: str, patient_id: str, mvct: Path, planning: Path, **params: Any
) -> httpx.Response:
    return httpx.post(
        f"{base_url}/api/v1/fractions",
        params=params,
        headers={"X-API-Key": key},
        data={"patient_id": patient_id},
        files=sf.upload("mvct", mvct) + sf.upload("planning", planning),
        timeout=300,
    )


@pytest.mark.slow
def test_a_real_server_takes_8_concurrent_fractions_and_survives_a_kill_mid_job(
    tmp_path: Path, database_url: str, series: sf.Samples
) -> None:
    data_dir = tmp_path / "data"
    engine = make_engine(database_url)
    upgrade(engine)
    with make_writer_factory(engine).begin() as session:
        keys = [create_api_key(session, f"console-{i}", Role.CONSOLE, "test") for i in range(4)]
    sessions = make_session_factory(engine)

    def count(query: Any) -> int:
        with sessions() as session:
            return int(session.scalar(query) or 0)

    server = Server(data_dir, database_url, workers=2, log=tmp_path / "server.log")
    try:
        server.wait_ready()
        workers = server.children()
        assert not _loads_itk(server.process.pid), "the web process loaded ITK"
        assert sum(_loads_itk(pid) for pid in workers) >= 2, "the workers are not warm"

        # 1. eight consoles' fractions at once, two of them sent twice
        jobs = [(keys[i % 4], series.mvcts[i]) for i in range(8)]
        jobs += [(keys[3], series.mvcts[0]), (keys[2], series.mvcts[1])]
        with ThreadPoolExecutor(len(jobs)) as pool:
            responses = list(
                pool.map(
                    lambda job: _post(
                        server.base_url, job[0], sf.PATIENT_ID, job[1], series.planning
                    ),
                    jobs,
                )
            )
        for response in responses:
            assert response.status_code in (200, 201), response.text
            assert response.json()["status"] == "done"
        ids = [r.json()["id"] for r in responses]
        assert len(set(ids[:8])) == 8
        assert ids[8] == ids[0] and ids[9] == ids[1]
        assert sorted(r.status_code for r in responses).count(201) == 8
        assert count(select(func.count()).select_from(Fraction)) == 8
        assert count(select(func.count()).select_from(RegistrationResult)) == 8
        assert count(select(func.count()).where(Job.status == "done")) == 8

        # 2. the sample fraction, and the service killed while it registers
        planning, mvct = SAMPLES / "planning", SAMPLES / "mvct"
        patient = "MVCT-SAMPLE-01"
        if not (mvct.is_dir() and planning.is_dir()):
            planning, mvct, patient = series.planning, series.mvcts[8], sf.PATIENT_ID
        accepted = _post(server.base_url, keys[0], patient, mvct, planning, wait="false")
        assert accepted.status_code == 202, accepted.text
        fraction_id = accepted.json()["id"]
        deadline = time.monotonic() + 60
        while True:
            status = httpx.get(
                f"{server.base_url}/api/v1/fractions/{fraction_id}",
                headers={"X-API-Key": keys[0]},
            ).json()["status"]
            if status == "running" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status == "running"
        server.kill()
        assert _all_dead(workers), "the workers outlived the killed service"
        with sessions() as session:
            job = session.scalars(select(Job).where(Job.fraction_id == fraction_id)).one()
            assert (job.status, job.attempts) == ("running", 1)
    finally:
        server.stop()

    restarted = Server(data_dir, database_url, workers=1, log=tmp_path / "server.log")
    try:
        restarted.wait_ready()
        deadline = time.monotonic() + 120
        while True:
            body = httpx.get(
                f"{restarted.base_url}/api/v1/fractions/{fraction_id}",
                headers={"X-API-Key": keys[1]},
            ).json()
            if body["status"] in ("done", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert body["status"] == "done", body
        assert body["attempts"] == 2
        result_query = select(func.count()).where(RegistrationResult.fraction_id == fraction_id)
        assert count(result_query) == 1
        assert count(select(func.count()).select_from(RegistrationResult)) == 9
        requeued = select(func.count()).where(AuditEvent.action == "requeued")
        assert count(requeued) == 1
    finally:
        restarted.stop()
        engine.dispose()

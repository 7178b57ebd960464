"""Load benchmark: simulated consoles posting fractions to a real deployment for a bounded time.

Starts, on 127.0.0.1 only, a fresh PostgreSQL database and either

* ``--queue celery``: ``--replicas`` API processes (``mvct-guide serve``, MVCT_GUIDE_QUEUE=celery)
  and one ``mvct-guide worker`` with ``--workers`` registration processes on the ``--broker``
  (the machine's Redis or RabbitMQ), all sharing one data directory; or
* ``--queue embedded``: one ``mvct-guide serve`` with ``--workers`` embedded warm workers;

then ``--consoles`` consoles each post a fraction (``wait=true``: the answer holds the couch
correction), pause ``--pause-s`` seconds (uniform), and post the next, until ``--seconds`` have
passed. Ten MVCTs are simulated from the sample planning CT with random motions (±5 mm, ±2°);
every post sends one of them as a new series (fresh UIDs, made in memory just before it is sent).
Prints latency (p50/p95/max), fractions per minute and status codes, and checks from the database
that no fraction was lost or duplicated. Every process is stopped at
the end; the database is dropped.

    python bench/bench_load.py [--queue celery] [--broker redis] [--replicas 2] [--workers 2]
                               [--consoles 10] [--seconds 120] [--pause-s 1,3]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
sys.path.insert(0, str(ROOT / "bench"))

import scaleout_fixtures as so  # noqa: E402
from bench_service import SAMPLES, make_mvcts  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "MVCT_GUIDE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", choices=["celery", "embedded"], default="celery")
    parser.add_argument("--broker", choices=sorted(so.BROKERS), default="redis")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--consoles", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--pause-s", default="1,3", help="min,max pause between a console's posts")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    pause = tuple(float(v) for v in args.pause_s.split(","))
    with tempfile.TemporaryDirectory(prefix="mvct-guide-load-") as folder:
        work = Path(folder)
        print("simulating MVCTs of the sample planning CT …", flush=True)
        patient_id, isocenter, bases = make_mvcts(work / "base", 10, args.seed)
        with Deployment(args, work) as deployment:
            report(args, deployment.run(patient_id, isocenter, Variants(bases), pause))
    return 0


class Variants:
    """New series of the simulated MVCTs: same pixels, fresh UIDs, encoded in memory."""

    def __init__(self, folders: list[Path]) -> None:
        self.series = [
            [(p.name, pydicom.dcmread(p)) for p in sorted(f.iterdir()) if p.is_file()]
            for f in folders
        ]
        self.count = 0
        self.lock = threading.Lock()

    def next(self) -> list[tuple[str, tuple[str, bytes, str]]]:
        with self.lock:
            datasets = self.series[self.count % len(self.series)]
            self.count += 1
            series_uid = generate_uid()
            files = []
            for name, dataset in datasets:
                sop_uid = generate_uid()
                dataset.SeriesInstanceUID = series_uid
                dataset.SOPInstanceUID = sop_uid
                dataset.file_meta.MediaStorageSOPInstanceUID = sop_uid
                buffer = io.BytesIO()
                dataset.save_as(buffer, enforce_file_format=True)
                files.append(("mvct", (name, buffer.getvalue(), "application/dicom")))
        return files


class Deployment:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        from sqlalchemy import create_engine, text

        self.args = args
        self.work = work
        self.name = f"mvct_guide_load_{secrets.token_hex(4)}"
        self.admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.name}"
        self.queue = so.new_queue_name()
        self.processes: list[so.Process] = []
        self.apis: list[so.ApiServer] = []

    def __enter__(self) -> Deployment:
        from app.db.engine import make_engine, make_writer_factory
        from app.db.migrate import upgrade
        from app.db.models import Role
        from app.services.accounts import create_api_key

        engine = make_engine(self.url)
        upgrade(engine)
        with make_writer_factory(engine).begin() as session:
            self.keys = [
                create_api_key(session, f"console-{i}", Role.CONSOLE, "bench")
                for i in range(self.args.consoles)
            ]
        engine.dispose()
        data = self.work / "data"
        started = time.perf_counter()
        if self.args.queue == "celery":
            broker_url = so.BROKERS[self.args.broker]
            worker = so.QueueWorker(
                data, self.url, broker_url, self.args.workers, self.work / "worker.log", self.queue
            )
            self.processes.append(worker)
            for i in range(self.args.replicas):
                log = self.work / f"api-{i}.log"
                api = so.ApiServer(data, self.url, broker_url, log, queue_name=self.queue)
                self.apis.append(api)
                self.processes.append(api)
            for api in self.apis:
                api.wait_ready()
            worker.wait_warm(timeout_s=300)
        else:
            api = so.ApiServer(
                data,
                self.url,
                "",
                self.work / "api-0.log",
                MVCT_GUIDE_WORKERS=str(self.args.workers),
            )
            self.apis.append(api)
            self.processes.append(api)
            api.wait_ready(timeout_s=300)  # readyz waits for the warm workers
        self.warm_s = time.perf_counter() - started
        return self

    def __exit__(self, *exc: object) -> None:
        from sqlalchemy import text

        for process in self.processes:
            process.stop()
        if self.args.queue == "celery":
            so.purge_queue(so.BROKERS[self.args.broker], self.queue)
        with self.admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()

    def run(
        self, patient_id: str, isocenter: str, mvcts: Variants, pause: tuple[float, ...]
    ) -> dict[str, Any]:
        first = httpx.post(
            f"{self.apis[0].base_url}/api/v1/fractions",
            headers={"X-API-Key": self.keys[0]},
            data={"patient_id": patient_id, "isocenter": isocenter},
            files=mvcts.next() + so.upload("planning", SAMPLES / "planning"),
            timeout=600,
        )
        assert first.status_code == 201, first.text
        course_id = first.json()["course_id"]
        lock = threading.Lock()
        rows: list[tuple[float, int, int]] = []  # (seconds, status, fraction id)
        started = time.monotonic()
        stop_at = started + self.args.seconds

        def console(index: int) -> None:
            rng = random.Random(index)
            api = self.apis[index % len(self.apis)]
            time.sleep(rng.uniform(0, pause[1]))  # consoles do not start in step
            http = httpx.Client(
                base_url=api.base_url, headers={"X-API-Key": self.keys[index]}, timeout=600
            )
            while time.monotonic() < stop_at:
                files = mvcts.next()
                t0 = time.perf_counter()
                response = http.post(
                    "/api/v1/fractions",
                    data={"patient_id": patient_id, "course_id": str(course_id)},
                    files=files,
                )
                seconds = time.perf_counter() - t0
                body = response.json() if response.status_code < 500 else {}
                with lock:
                    rows.append((seconds, response.status_code, int(body.get("id", -1))))
                time.sleep(rng.uniform(*pause))

        with ThreadPoolExecutor(self.args.consoles) as pool:
            list(pool.map(console, range(self.args.consoles)))
        wall_s = time.monotonic() - started
        return {"rows": rows, "wall_s": wall_s, "warm_s": self.warm_s, **self.check(rows)}

    def check(self, rows: list[tuple[float, int, int]]) -> dict[str, Any]:
        from sqlalchemy import create_engine, func, select
        from sqlalchemy.orm import Session

        from app.db.models import Fraction, Job, RegistrationResult

        engine = create_engine(self.url)
        with Session(engine) as session:
            fractions = session.scalar(select(func.count()).select_from(Fraction))
            results = session.scalar(select(func.count()).select_from(RegistrationResult))
            done = session.scalar(select(func.count()).where(Job.status == "done"))
            retried = session.scalar(select(func.count()).where(Job.attempts > 1))
        engine.dispose()
        ids = [r[2] for r in rows if r[1] in (200, 201)]
        return {
            "fractions": fractions,
            "results": results,
            "done": done,
            "retried": retried,
            "duplicate_answers": len(ids) - len(set(ids)),
        }


def report(args: argparse.Namespace, run: dict[str, Any]) -> None:
    rows = run["rows"]
    latency = [r[0] for r in rows if r[1] in (200, 201)]
    statuses: dict[int, int] = {}
    for _, status, _ in rows:
        statuses[status] = statuses.get(status, 0) + 1
    mode = (
        f"celery/{args.broker}, {args.replicas} API replicas"
        if args.queue == "celery"
        else "embedded pool, 1 API process"
    )
    print()
    print(
        f"mvct-guide load benchmark — {os.cpu_count()} CPU cores, PostgreSQL, {mode}, "
        f"{args.workers} registration processes"
    )
    print(
        f"{args.consoles} consoles, {args.seconds:.0f} s, pause {args.pause_s} s between a "
        f"console's posts; start-up until ready and warm: {run['warm_s']:.1f} s; load average "
        f"at the end {os.getloadavg()[0]:.1f} (other work on the machine shares its cores)"
    )
    print()
    header = (
        f"{'posts':>6}{'2xx':>6}{'5xx':>5}{'p50 s':>8}{'p95 s':>8}{'max s':>8}"
        f"{'fractions/min':>15}{'stored':>8}{'registered':>12}{'dup':>5}{'retried':>9}"
    )
    print(header)
    print("-" * len(header))
    ok = len(latency)
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    print(
        f"{len(rows):>6}{ok:>6}{server_errors:>5}{statistics.median(latency):>8.2f}"
        f"{float(np.percentile(latency, 95)):>8.2f}{max(latency):>8.2f}"
        f"{ok / run['wall_s'] * 60:>15.1f}{run['fractions'] - 1:>8}{run['results'] - 1:>12}"
        f"{run['duplicate_answers']:>5}{run['retried']:>9}"
    )
    print()
    print(f"status codes: {dict(sorted(statuses.items()))}; wall time {run['wall_s']:.1f} s")


if __name__ == "__main__":
    sys.exit(main())

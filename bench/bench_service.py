"""Service benchmark: latency of POST /api/v1/fractions and fractions per minute, real server.

Starts ``mvct-guide serve`` (SQLite and files in a temporary data directory, ``--workers`` warm
registration workers) and drives it over HTTP like a console:

* **latency**: fractions posted one after another (``wait=true``: until the couch correction is
  in the answer) for a course whose planning CT is already stored and prepared, once by
  ``course_id`` and once re-sending the planning CT files (found by content hash, not stored
  again); median and p95 over ``--latency-fractions`` posts each, with the engine's own
  registration seconds for comparison;
* **throughput**: ``--throughput-fractions`` posted by ``--concurrency`` consoles at once;
  fractions per minute = count / wall time.

MVCTs are simulated from the sample planning CT (``registration.simulate``) with random motions
(±5 mm, ±2°), so every post is a new fraction. Target: median ≤ 2 s on 2 cores.

    python bench/bench_service.py [--workers 2] [--latency-fractions 10] [--throughput-fractions 16]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency-fractions", type=int, default=10)
    parser.add_argument("--throughput-fractions", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    n_mvct = 2 * args.latency_fractions + args.throughput_fractions
    with tempfile.TemporaryDirectory(prefix="mvct-guide-bench-") as folder:
        work = Path(folder)
        print(f"simulating {n_mvct} MVCTs of the sample planning CT …", flush=True)
        patient_id, isocenter, mvcts = make_mvcts(work / "mvct", n_mvct, args.seed)
        key = make_key(work / "data")
        with Server(work / "data", args.workers, work / "server.log") as server:
            started = time.perf_counter()
            server.wait_ready()
            warm_s = time.perf_counter() - started
            client = Console(server.base_url, key, patient_id, isocenter)
            first = client.post(mvcts[0], planning=SAMPLES / "planning")
            course_id = first["course_id"]
            queue = list(mvcts[1:])
            by_course = [
                client.timed(queue.pop(0), course_id=course_id)
                for _ in range(args.latency_fractions)
            ]
            by_files = [
                client.timed(queue.pop(0), planning=SAMPLES / "planning")
                for _ in range(args.latency_fractions - 1)
            ]
            batch = queue[: args.throughput_fractions]
            started = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                done = list(pool.map(lambda m: client.timed(m, course_id=course_id), batch))
            wall_s = time.perf_counter() - started
        report(args, warm_s, first, by_course, by_files, done, wall_s)
    return 0


class Console:
    def __init__(self, base_url: str, key: str, patient_id: str, isocenter: str) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"X-API-Key": key}, timeout=600)
        self.patient_id = patient_id
        self.isocenter = isocenter

    def post(self, mvct: Path, **fields: Any) -> dict[str, Any]:
        files = _files("mvct", mvct)
        data = {"patient_id": self.patient_id, "isocenter": self.isocenter}
        if "planning" in fields:
            files += _files("planning", fields["planning"])
        else:
            data["course_id"] = str(fields["course_id"])
        response = self.http.post("/api/v1/fractions", data=data, files=files)
        if response.status_code not in (200, 201):
            raise SystemExit(f"POST failed ({response.status_code}): {response.text}")
        body: dict[str, Any] = response.json()
        return body

    def timed(self, mvct: Path, **fields: Any) -> tuple[float, float]:
        """(seconds of the POST, seconds the engine spent registering)."""
        started = time.perf_counter()
        body = self.post(mvct, **fields)
        return time.perf_counter() - started, float(body["quality"]["seconds"])


def _files(field: str, folder: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        (field, (p.name, p.read_bytes(), "application/dicom"))
        for p in sorted(folder.iterdir())
        if p.is_file()
    ]


def make_mvcts(folder: Path, count: int, seed: int) -> tuple[str, str, list[Path]]:
    import json

    from registration.dicom_series import read_ct_series
    from registration.dicom_write import write_ct_series
    from registration.geometry import LpsPoint
    from registration.simulate import MvctSimulationOptions, random_motion, simulate_mvct

    planning = read_ct_series(SAMPLES / "planning")
    truth = json.loads((SAMPLES / "truth.json").read_text())
    iso = LpsPoint.from_array(truth["isocenter_lps_mm"])
    rng = np.random.default_rng(seed)
    options = MvctSimulationOptions(
        pixel_spacing_mm=1.5625, slice_spacing_mm=4.0, scan_length_mm=120.0, scan_center=iso
    )
    out = []
    for i in range(count):
        motion = random_motion(rng, 5.0, 2.0, iso)
        image = simulate_mvct(planning.image, motion, _with_seed(options, i))
        target = folder / f"{i:03d}"
        write_ct_series(
            image,
            target,
            patient_position=planning.patient_position,
            patient_id=planning.patient_id,
        )
        out.append(target)
    return planning.patient_id, ",".join(str(v) for v in truth["isocenter_lps_mm"]), out


def _with_seed(options: Any, seed: int) -> Any:
    from dataclasses import replace

    return replace(options, random_seed=seed)


def make_key(data_dir: Path) -> str:
    from app.config import Settings
    from app.db.migrate import upgrade
    from app.db.models import Role
    from app.lifecycle import build_context
    from app.services.accounts import create_api_key

    ctx = build_context(Settings(data_dir=data_dir))
    data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(ctx.engine)
    with ctx.writer.begin() as session:
        key = create_api_key(session, "bench-console", Role.CONSOLE, "bench")
    ctx.engine.dispose()
    return key


class Server:
    def __init__(self, data_dir: Path, workers: int, log: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self._log = log.open("wb")
        env = {**os.environ, "MVCT_GUIDE_WORKERS": str(workers)}
        env.pop("MVCT_GUIDE_DATABASE_URL", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port),
             "--data-dir", str(data_dir)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        self.log = log

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()

    def wait_ready(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server stopped:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit("the server did not become ready")


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def report(
    args: argparse.Namespace,
    warm_s: float,
    first: dict[str, Any],
    by_course: list[tuple[float, float]],
    by_files: list[tuple[float, float]],
    done: list[tuple[float, float]],
    wall_s: float,
) -> None:
    print()
    print(
        f"mvct-guide service benchmark — {os.cpu_count()} CPU cores, {args.workers} workers, SQLite"
    )
    print(f"start-up until /readyz (workers warm): {warm_s:.1f} s")
    print(
        "first fraction (planning CT stored and prepared): "
        f"engine {first['quality']['seconds']:.2f} s"
    )
    print()
    title = "POST /api/v1/fractions (cached planning CT)"
    header = f"{title:<46}{'n':>4}{'median s':>10}{'p95 s':>8}{'engine median s':>17}"
    print(header)
    print("-" * len(header))
    for label, rows in (
        ("course_id (planning CT not re-sent)", by_course),
        ("planning CT re-sent (found by content hash)", by_files),
        (f"{args.concurrency} consoles at once", done),
    ):
        latency = [r[0] for r in rows]
        engine = [r[1] for r in rows]
        print(
            f"{label:<46}{len(rows):>4}{statistics.median(latency):>10.2f}{_p95(latency):>8.2f}"
            f"{statistics.median(engine):>17.2f}"
        )
    print()
    per_minute = len(done) / wall_s * 60
    print(
        f"throughput: {len(done)} fractions from {args.concurrency} consoles in {wall_s:.1f} s "
        f"= {per_minute:.1f} fractions per minute with {args.workers} workers"
    )


if __name__ == "__main__":
    sys.exit(main())

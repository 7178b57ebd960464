"""The planning cache sweep: folders of planning CTs no row names go; the rest, and anything that
may still be being written, stay.

The course is made through the API (so its planning CT has a row); the cache folders are written
as the worker writes them (a prepared folder of ``.npy`` files and ``meta.json``, the structures'
``.npz`` through :func:`app.jobs.planning_cache.save`) and aged with ``os.utime``. SQLite and
PostgreSQL.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import service_fixtures as sf
import SimpleITK as sitk
from service_fixtures import TestClient
from sqlalchemy import select

from app.db.models import Course
from app.jobs import planning_cache
from app.jobs.planning_cache import CachedStructure, CachedStructures
from app.main import create_app

TWO_HOURS_S = 7200.0


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``condition`` until it holds (bounded; never a timing check)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def sha(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def write_cache(root: Path, planning_sha256: str) -> Path:
    """A planning CT's cache folder as the worker leaves it: prepared files and structures."""
    folder = root / planning_sha256
    prepared = folder / "prepared-0123456789abcdef"
    prepared.mkdir(parents=True)
    np.save(prepared / "volume.npy", np.zeros((4, 8, 8), np.int16))
    np.save(prepared / "level-0.npy", np.zeros((2, 4, 4), np.float32))
    (prepared / "meta.json").write_text('{"format": 1}')
    grid = sitk.Image([8, 8, 4], sitk.sitkUInt8)
    mask = np.zeros((4, 8, 8), bool)
    mask[1:3, 2:6, 2:6] = True
    structures = CachedStructures(grid, (CachedStructure("PTV", "PTV", (255, 0, 0), mask),))
    planning_cache.save(
        planning_cache.cache_file(root, planning_sha256, sha("rtstruct")), structures
    )
    return folder


def age(folder: Path, seconds: float) -> None:
    """Make everything in ``folder`` (and the folder) look ``seconds`` old."""
    then = time.time() - seconds
    for parent, names, files in os.walk(folder):
        for name in (*names, *files):
            os.utime(os.path.join(parent, name), (then, then))
    os.utime(folder, (then, then))


@pytest.fixture
def client(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(sf.make_settings(tmp_path, database_url))) as test_client:
        yield test_client


def course_planning_sha256(client: TestClient, series: sf.Samples) -> str:
    console = sf.add_api_key(client, "console-1")
    response = client.post(
        "/api/v1/courses",
        headers=console,
        data={"patient_id": sf.PATIENT_ID},
        files=sf.upload("planning", series.planning),
    )
    assert response.status_code == 201, response.text
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        course = session.scalars(select(Course)).one()
        return str(course.planning_series.content_sha256)


def test_only_old_folders_of_planning_cts_no_row_names_are_removed(
    client: TestClient, series: sf.Samples
) -> None:
    ctx = client.app.state.context  # type: ignore[attr-defined]
    root = ctx.store.root.parent / planning_cache.CACHE_DIR_NAME
    course_sha = course_planning_sha256(client, series)
    used = write_cache(root, course_sha)
    gone = write_cache(root, sha("a planning CT of a database restored from an older backup"))
    fresh = write_cache(root, sha("no row yet, written a minute ago"))
    staging = write_cache(root, sha("no row, a prepared folder being written into it"))
    npz_staging = write_cache(root, sha("no row, a structures file being written into it"))
    other = root / "notes"
    other.mkdir()
    # files still being written: only their own times are recent, not their folders'
    half_written = [
        staging / ".prepared-staging-5f2b" / "volume.npy",
        npz_staging / f".{sha('rtstruct')}-5f2b.npz",
    ]
    half_written[0].parent.mkdir()
    for path in half_written:
        path.write_bytes(b"the first bytes")
    for folder in (used, gone, staging, npz_staging, other):
        age(folder, TWO_HOURS_S)
    for path in half_written:
        with path.open("ab") as handle:
            handle.write(b" and more")

    removed = planning_cache.sweep_unreferenced(ctx.store, ctx.sessions)

    assert removed == [gone.name]
    assert not gone.exists()
    assert sorted(p.name for p in root.iterdir()) == sorted(
        p.name for p in (used, fresh, staging, npz_staging, other)
    )
    cached = planning_cache.load(planning_cache.cache_file(root, course_sha, sha("rtstruct")))
    assert cached is not None and cached.structures[0].mask.sum() == 2 * 4 * 4
    assert (used / "prepared-0123456789abcdef" / "meta.json").is_file()
    assert planning_cache.sweep_unreferenced(ctx.store, ctx.sessions) == []


def test_the_service_sweeps_the_planning_cache_by_itself_every_disk_sweep_period(
    tmp_path: Path, database_url: str
) -> None:
    settings = sf.make_settings(tmp_path, database_url, disk_sweep_s=1)
    root = settings.data_dir / planning_cache.CACHE_DIR_NAME
    with TestClient(create_app(settings)):
        orphan = write_cache(root, sha("a planning CT no row names"))
        age(orphan, TWO_HOURS_S)
        # renamed away first, then deleted: wait until both are done
        assert wait_for(lambda: not any(root.iterdir()), timeout_s=30), "no request asked for it"
        assert not orphan.exists()
        assert list(root.iterdir()) == []

"""A full image store: a clear 507 in JSON, nothing half-written, and fine again once freed.

The data directory is a real, small file system (a 24 MB tmpfs mounted for the test; root is
needed, as on CI), filled up with a ballast file; the database lives elsewhere.
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import service_fixtures as sf
from service_fixtures import TestClient
from sqlalchemy import func, select

from app.api.faults import STORAGE_FULL
from app.db.models import Fraction, ImageSeries, Job
from app.main import create_app


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "data"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Write a ballast file until the file system is full (bounded by its 24 MB)."""
    ballast = folder / "ballast"
    chunk = b"\0" * (256 * 1024)
    with ballast.open("wb") as out:
        for _ in range(24 * 4 + 8):
            try:
                out.write(chunk)
                out.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        else:
            raise AssertionError("the small file system never filled up")
    return ballast


def post(client: TestClient, headers: dict[str, str], mvct: Path, **data: Any) -> Any:
    return client.post(
        "/api/v1/fractions",
        params={"wait": "false"},
        headers=headers,
        data={"patient_id": sf.PATIENT_ID, **data},
        files=sf.upload("mvct", mvct),
    )


def test_a_full_image_store_gives_507_and_leaves_nothing_half_written(
    small_disk: Path, tmp_path: Path, sqlite_url: str, series: sf.Samples
) -> None:
    settings = sf.make_settings(tmp_path, sqlite_url, data_dir=small_disk)
    with TestClient(create_app(settings)) as client:
        headers = sf.add_api_key(client, "console-1")
        first = client.post(
            "/api/v1/fractions",
            params={"wait": "false"},
            headers=headers,
            data={"patient_id": sf.PATIENT_ID},
            files=sf.upload("mvct", series.mvcts[0]) + sf.upload("planning", series.planning),
        )
        assert first.status_code == 202, first.text
        course_id = str(first.json()["course_id"])
        ctx = client.app.state.context  # type: ignore[attr-defined]
        stored_before = sorted(p for p in settings.images_dir.rglob("*"))

        ballast = fill(small_disk)
        response = post(client, headers, series.mvcts[1], course_id=course_id)
        assert response.status_code == 507, response.text
        assert response.json() == {"detail": STORAGE_FULL}
        with ctx.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Fraction)) == 1
            assert session.scalar(select(func.count()).select_from(Job)) == 1
            assert session.scalar(select(func.count()).select_from(ImageSeries)) == 2
        assert sorted(p for p in settings.images_dir.rglob("*")) == stored_before
        assert list(settings.tmp_dir.iterdir()) == [], "a partial upload was left behind"

        ballast.unlink()  # the physicist frees space; the console sends it again
        again = post(client, headers, series.mvcts[1], course_id=course_id)
        assert again.status_code == 202, again.text
        with ctx.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Fraction)) == 2

"""A .zip upload is never inflated into the server's memory (issue 11, item 12).

The archive's members are streamed to disk; a member whose declared size or compression ratio is
beyond the limits is refused with 413 before a byte of it is inflated. Memory is measured with
tracemalloc in the test process (the app runs in it), bounded far below the member's size.
Refused before the database is written, so SQLite is enough.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
import service_fixtures as sf
from service_fixtures import TestClient
from zip_bomb import write_zip_bomb

MIB = 1024 * 1024


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


def test_a_small_zip_holding_one_huge_compressible_member_is_refused_with_413_without_inflating(
    client: TestClient, console: dict[str, str], series: sf.Samples, tmp_path: Path
) -> None:
    bomb = write_zip_bomb(tmp_path / "mvct.zip", member_mib=200)
    planning = sf.zipped(series.planning, tmp_path / "planning")

    tracemalloc.start()
    try:
        response = client.post(
            "/api/v1/fractions",
            headers=console,
            data={"patient_id": sf.PATIENT_ID},
            files=[
                ("mvct", ("mvct.zip", bomb.read_bytes(), "application/zip")),
                ("planning", ("planning.zip", planning.read_bytes(), "application/zip")),
            ],
        )
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 413, response.text
    assert "compression ratio" in response.json()["detail"]
    assert peak_bytes < 48 * MIB, f"{peak_bytes / MIB:.0f} MiB allocated while refusing it"
    data_dir = client.app.state.context.settings.data_dir  # type: ignore[attr-defined]
    assert sf.stored_files(data_dir) == []


def test_a_zipped_series_is_still_accepted_member_by_member(
    client: TestClient, console: dict[str, str], series: sf.Samples, tmp_path: Path
) -> None:
    mvct = sf.zipped(series.mvcts[0], tmp_path / "mvct")
    planning = sf.zipped(series.planning, tmp_path / "planning")
    response = client.post(
        "/api/v1/fractions?wait=false",
        headers=console,
        data={"patient_id": sf.PATIENT_ID},
        files=[
            ("mvct", ("mvct.zip", mvct.read_bytes(), "application/zip")),
            ("planning", ("planning.zip", planning.read_bytes(), "application/zip")),
        ],
    )
    assert response.status_code == 202, response.text

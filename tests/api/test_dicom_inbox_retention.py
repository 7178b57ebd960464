"""Received files leave the DICOM inbox a retention period after their series was used or
discarded; the image store, and series still held or waiting, keep theirs.

Real files: the generated CT series are sent by STOW-RS (the same inbox and grouper as C-STORE),
the ingest hands them to the image store, and "a retention period later" is the series rows'
``updated_at`` moved back by 8 days. SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import service_fixtures as sf
from service_fixtures import TestClient
from sqlalchemy import select, update
from test_dicomweb import files_of, post, wait_for

from app.db.models import AuditEvent, ImageSeries, Role, utcnow
from app.db.models_dicom import DicomSeries
from app.dicom.quota import backlog_bytes
from app.main import create_app
from app.storage import file_sha256, series_content_hash

PHYSICIST = ("mcurie", "correct horse")


def make_client(tmp_path: Path, database_url: str, **overrides: Any) -> TestClient:
    settings = sf.make_settings(tmp_path, database_url, dicom_quiet_s=0.2, **overrides)
    return TestClient(create_app(settings))


@pytest.fixture
def client(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    """Planning CTs identified by description; the background sweep an hour away."""
    with make_client(tmp_path, database_url, dicom_planning_pattern=sf.PLANNING_PATTERN) as c:
        yield c


def inbox_files(client: TestClient) -> set[str]:
    """The digests of the files in the inbox (its temporary folder excluded)."""
    root = client.app.state.dicom.inbox.root  # type: ignore[attr-defined]
    return {p.stem for p in Path(root).glob("??/*.dcm")}


def digests_of(folder: Path) -> set[str]:
    """What the inbox names the files of ``folder`` (STOW-RS keeps the bytes as sent)."""
    return {file_sha256(p) for p in folder.iterdir() if p.is_file()}


def settled(client: TestClient, n_series: int) -> list[DicomSeries]:
    def rows() -> list[DicomSeries]:
        with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
            return list(session.scalars(select(DicomSeries).order_by(DicomSeries.id)))

    found = wait_for(
        lambda: (r := rows()) and len(r) == n_series and all(s.state != "pending" for s in r) and r
    )
    assert found, rows()
    return list(found)


def age_every_series(client: TestClient, days: float) -> None:
    """As if every received series had last changed ``days`` ago."""
    with client.app.state.context.writer() as session:  # type: ignore[attr-defined]
        session.execute(update(DicomSeries).values(updated_at=utcnow() - timedelta(days=days)))
        session.commit()


def removal_audit(client: TestClient) -> dict[str, dict[str, Any]]:
    """Series id → detail of its ``dicom_inbox_files_removed`` audit row."""
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "dicom_inbox_files_removed")
        ).all()
        return {r.entity_id: r.detail for r in rows}


def assert_store_intact(client: TestClient) -> int:
    """Every stored series has its files, with the bytes its content hash names; how many."""
    ctx = client.app.state.context  # type: ignore[attr-defined]
    with ctx.sessions() as session:
        rows = session.scalars(select(ImageSeries)).all()
        for row in rows:
            files = ctx.store.series_files(row.content_sha256)
            assert len(files) == row.n_files
            assert series_content_hash(file_sha256(f) for f in files) == row.content_sha256
        return len(rows)


def test_files_of_ingested_series_are_removed_after_the_retention_and_the_store_keeps_its_own(
    client: TestClient, series: sf.Samples
) -> None:
    key = sf.add_api_key(client, "console-stow")
    assert post(client, key, files_of(series.planning)).status_code == 200
    assert post(client, key, files_of(series.mvcts[0])).status_code == 200
    # an MVCT of a patient without a course waits for its planning CT: its files are kept
    assert post(client, key, files_of(series.other_patient_mvct)).status_code == 200
    rows = settled(client, 3)
    assert sorted((r.kind, r.state) for r in rows) == [
        ("mvct", "done"),
        ("mvct", "waiting"),
        ("planning", "done"),
    ]
    used = digests_of(series.planning) | digests_of(series.mvcts[0])
    waiting = digests_of(series.other_patient_mvct)
    assert inbox_files(client) == used | waiting
    dicom = client.app.state.dicom  # type: ignore[attr-defined]

    assert dicom.sweep_inbox().files == 0, "within the 7 days, nothing goes"
    age_every_series(client, days=8)
    client.app.state.context.settings.dicom_inbox_retention_days = 0  # type: ignore[attr-defined]
    assert dicom.sweep_inbox().files == 0, "0 days: kept forever"
    client.app.state.context.settings.dicom_inbox_retention_days = 7  # type: ignore[attr-defined]

    swept = dicom.sweep_inbox()

    assert swept.files == len(used)
    assert inbox_files(client) == waiting
    assert assert_store_intact(client) == 2  # the planning CT and the MVCT, every file there
    done = {str(r.id): r for r in rows if r.state == "done"}
    audit = removal_audit(client)
    assert set(audit) == set(done)
    assert sorted(a["files"] for a in audit.values()) == sorted(
        r.n_instances for r in done.values()
    )
    assert {a["why"] for a in audit.values()} == {"ingested"}
    assert dicom.sweep_inbox().files == 0, "a second sweep finds nothing more"


def test_a_held_series_keeps_its_files_and_a_discarded_one_loses_them_after_the_retention(
    tmp_path: Path, database_url: str, series: sf.Samples
) -> None:
    # no MVCT pattern: both MVCTs below match no rule and are held for a physicist
    with make_client(tmp_path, database_url, dicom_mvct_pattern="") as client:
        sf.add_person(client, PHYSICIST[0], Role.PHYSICIST, PHYSICIST[1])
        archive = sf.add_api_key(client, "archive")
        assert post(client, archive, files_of(series.mvcts[1])).status_code == 200
        assert post(client, archive, files_of(series.mvcts[2])).status_code == 200
        held, to_discard = settled(client, 2)
        discarded = client.post(
            f"/api/v1/dicom/unassigned/{to_discard.id}/discard",
            json={"reason": "a test scan of the phantom"},
            auth=PHYSICIST,
        )
        assert discarded.status_code == 200, discarded.text
        kept = digests_of(series.mvcts[1])
        assert inbox_files(client) == kept | digests_of(series.mvcts[2])
        backlog = backlog_bytes(client.app.state.context.sessions)  # type: ignore[attr-defined]
        dicom = client.app.state.dicom  # type: ignore[attr-defined]

        assert dicom.sweep_inbox().files == 0, "discarded today: kept for the retention period"
        age_every_series(client, days=8)
        swept = dicom.sweep_inbox()

        assert swept.files == to_discard.n_instances
        assert swept.freed_bytes == swept.size_bytes > 0, "the store never had these files"
        assert inbox_files(client) == kept, "held for 8 days: still waiting for a physicist"
        assert backlog_bytes(client.app.state.context.sessions) == backlog  # type: ignore[attr-defined]
        audit = removal_audit(client)
        assert list(audit) == [str(to_discard.id)]
        assert audit[str(to_discard.id)]["why"] == "discarded"
        listed = client.get("/api/v1/dicom/unassigned", auth=PHYSICIST).json()["series"]
        assert [s["series_id"] for s in listed] == [held.id]


def test_the_service_sweeps_the_inbox_by_itself_every_disk_sweep_period(
    tmp_path: Path, database_url: str, series: sf.Samples
) -> None:
    with make_client(
        tmp_path, database_url, dicom_planning_pattern=sf.PLANNING_PATTERN, disk_sweep_s=1
    ) as client:
        key = sf.add_api_key(client, "console-stow")
        assert post(client, key, files_of(series.planning)).status_code == 200
        (row,) = settled(client, 1)
        assert row.state == "done" and inbox_files(client)
        age_every_series(client, days=8)

        def swept() -> bool:  # the files go first, then their audit, in a transaction of its own
            return not inbox_files(client) and bool(removal_audit(client))

        assert wait_for(swept, timeout_s=30), "no request asked for it"
        assert list(removal_audit(client)) == [str(row.id)]
        assert assert_store_intact(client) == 1

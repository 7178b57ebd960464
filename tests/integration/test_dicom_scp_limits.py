"""The C-STORE SCP in this process, with pynetdicom as the peer: who may associate, and limits.

Issue 11: any calling AE was accepted by default (item 6), and the listener had no per-data-set
size cap and no inbox quota (item 13). The SCP here is the service's own
:class:`app.dicom.scp.StorageScp` on a fresh SQLite database and inbox; no grouper runs. The
data sets are the sample MVCT's slices (about 0.13 MB each).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE

from app.config import Settings
from app.db.engine import make_engine, make_session_factory, make_writer_factory
from app.db.migrate import upgrade
from app.dicom.grouping import InFlight
from app.dicom.inbox import OUT_OF_RESOURCES, Inbox
from app.dicom.quota import InboxQuota, backlog_bytes, watched_paths
from app.dicom.scp import VERIFICATION, StorageScp

SLICES = sorted((Path(__file__).resolve().parents[2] / "sample_images" / "mvct").glob("*.dcm"))

AE_TITLE = "MVCTGUIDE"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def start_scp(tmp_path: Path) -> Iterator[Callable[..., StorageScp]]:
    """Start an SCP with the given settings; stopped after the test."""
    engine = make_engine(f"sqlite:///{tmp_path / 'mvct-guide.sqlite3'}")
    upgrade(engine)
    started: list[StorageScp] = []

    def start(**overrides: Any) -> StorageScp:
        settings = Settings(
            data_dir=tmp_path / "data",
            dicom_port=free_port(),
            dicom_ae_title=AE_TITLE,
            **overrides,
        )
        inbox = Inbox(settings.data_dir / "dicom-inbox")
        inbox.ensure_dirs()
        quota = InboxQuota(
            settings,
            watched_paths(settings, inbox.root),
            lambda: backlog_bytes(make_session_factory(engine)),
        )
        scp = StorageScp(
            settings, inbox, make_writer_factory(engine), InFlight(), lambda: None, quota=quota
        )
        scp.start()
        started.append(scp)
        return scp

    yield start
    for scp in started:
        scp.stop()
    engine.dispose()


def echo(scp: StorageScp, calling: str) -> tuple[bool, int | None]:
    """(association accepted, C-ECHO status) for a peer calling itself ``calling``."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate(*scp.address, ae_title=AE_TITLE)
    if not assoc.is_established:
        return False, None
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    return True, int(status.Status)


def test_with_no_calling_ae_configured_every_association_is_refused_and_logged(
    start_scp: Callable[..., StorageScp], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="app.dicom.scp"):
        scp = start_scp()
        assert echo(scp, "STORESCU") == (False, None)
        assert echo(scp, "ANYONE") == (False, None)
    assert "refuses every association" in caplog.text
    assert "calling AE 'STORESCU'" in caplog.text and "not configured" in caplog.text


def test_only_the_ae_titles_configured_as_senders_may_associate(
    start_scp: Callable[..., StorageScp],
) -> None:
    scp = start_scp(dicom_allowed_aes="QA", dicom_mvct_aes="TOMO1", dicom_planning_aes="TPS")
    assert echo(scp, "TOMO1") == (True, 0)
    assert echo(scp, "TPS") == (True, 0)
    assert echo(scp, "QA") == (True, 0)
    assert echo(scp, "INTRUDER") == (False, None)


def store(scp: StorageScp, paths: list[Path]) -> tuple[bool, list[Dataset]]:
    """(association still up at the end, the status of each C-STORE sent)."""
    ae = AE(ae_title="TOMO1")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate(*scp.address, ae_title=AE_TITLE)
    assert assoc.is_established
    statuses = []
    try:
        for path in paths:
            statuses.append(assoc.send_c_store(dcmread(path)))
    finally:
        if statuses and "Status" not in statuses[-1]:  # no answer: wait for the A-ABORT
            deadline = time.monotonic() + 10
            while assoc.is_established and time.monotonic() < deadline:
                time.sleep(0.01)
        alive = assoc.is_established
        if alive:
            assoc.release()
    return alive, statuses


def inbox_files(scp: StorageScp) -> list[Path]:
    root = scp._inbox.root
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_a_data_set_larger_than_the_limit_is_answered_out_of_resources_and_not_written(
    start_scp: Callable[..., StorageScp],
) -> None:
    scp = start_scp(dicom_mvct_aes="TOMO1", dicom_max_dataset_mb=0.1)
    alive, statuses = store(scp, SLICES[:1])
    assert alive
    assert int(statuses[0].Status) == OUT_OF_RESOURCES
    assert "MVCT_GUIDE_DICOM_MAX_DATASET_MB" in str(statuses[0].ErrorComment)
    assert inbox_files(scp) == []


def test_a_data_set_still_arriving_beyond_twice_the_limit_ends_the_association(
    start_scp: Callable[..., StorageScp],
) -> None:
    scp = start_scp(dicom_mvct_aes="TOMO1", dicom_max_dataset_mb=0.05)
    alive, statuses = store(scp, SLICES[:1])
    assert not alive
    assert "Status" not in statuses[0]  # no answer: the association was aborted
    assert inbox_files(scp) == []


def test_the_inbox_backlog_quota_refuses_the_instance_that_would_exceed_it(
    start_scp: Callable[..., StorageScp],
) -> None:
    scp = start_scp(dicom_mvct_aes="TOMO1", dicom_inbox_quota_mb=0.3)
    _, statuses = store(scp, SLICES[:3])
    assert [int(s.Status) for s in statuses] == [0x0000, 0x0000, OUT_OF_RESOURCES]
    assert "MVCT_GUIDE_DICOM_INBOX_QUOTA_MB" in str(statuses[2].ErrorComment)
    assert len(inbox_files(scp)) == 2


def test_a_write_that_would_leave_less_free_disk_than_the_minimum_is_refused(
    start_scp: Callable[..., StorageScp],
) -> None:
    scp = start_scp(dicom_mvct_aes="TOMO1", dicom_min_free_mb=1e12)
    _, statuses = store(scp, SLICES[:1])
    assert int(statuses[0].Status) == OUT_OF_RESOURCES
    assert "MVCT_GUIDE_DICOM_MIN_FREE_MB" in str(statuses[0].ErrorComment)
    assert inbox_files(scp) == []

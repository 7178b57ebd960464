"""The C-STORE SCP in this process, with pynetdicom as the peer: who may associate, and limits.

Issue 11: any calling AE was accepted by default (item 6). The SCP here is the service's own
:class:`app.dicom.scp.StorageScp` on a fresh SQLite database and inbox; no grouper runs.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE

from app.config import Settings
from app.db.engine import make_engine, make_writer_factory
from app.db.migrate import upgrade
from app.dicom.grouping import InFlight
from app.dicom.inbox import Inbox
from app.dicom.scp import VERIFICATION, StorageScp

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
        scp = StorageScp(settings, inbox, make_writer_factory(engine), InFlight(), lambda: None)
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

"""Limits on what the DICOM receivers (C-STORE and STOW-RS) write: size, backlog, free disk.

Three settings, each refusing an instance with Out of Resources (0xA700: the C-STORE status, or
the STOW-RS Failure Reason) and words that name the setting:

* ``dicom_max_dataset_mb``: one data set larger than this is refused (a CT slice is < 2 MB). A
  C-STORE data set arrives whole before it can be answered; one still arriving beyond twice the
  limit ends the association (A-ABORT) instead, so memory stays bounded;
* ``dicom_inbox_quota_mb``: the inbox backlog — instances received and still waiting (not yet in
  a series, pending, waiting for a course, failed, or held for a physicist) — may not grow
  beyond this;
* ``dicom_min_free_mb``: a write that would leave less than this free on the disk of the inbox,
  or of the SQLite database, is refused: the receivers never fill the database's disk.

The backlog is measured in the database (at most every ``remeasure_s``) plus what this process
stored since; reservations are made under a lock, so concurrent associations cannot overshoot.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.models_dicom import DicomInstance, DicomSeries, DicomUnassigned, SeriesState

_MB = 1024 * 1024


class InboxQuota:
    def __init__(
        self,
        settings: Settings,
        watched: Sequence[Path],
        measure: Callable[[], int],
        remeasure_s: float = 30.0,
    ) -> None:
        self.max_dataset_bytes = int(settings.dicom_max_dataset_mb * _MB)
        self._quota_bytes = int(settings.dicom_inbox_quota_mb * _MB)
        self._min_free_bytes = int(settings.dicom_min_free_mb * _MB)
        self._watched = tuple(watched)
        self._measure = measure
        self._remeasure_s = remeasure_s
        self._lock = threading.Lock()
        self._measured_bytes = 0
        self._since_bytes = 0  #: reserved in this process since the last measurement
        self._measured_at = float("-inf")

    def check(self, size_bytes: int) -> str | None:
        """Why ``size_bytes`` more may not be written now; None if they may (nothing reserved)."""
        with self._lock:
            return self._refusal(size_bytes)

    def reserve(self, size_bytes: int) -> str | None:
        """Reserve ``size_bytes`` of backlog, or say why not; :meth:`release` gives them back."""
        with self._lock:
            refusal = self._refusal(size_bytes)
            if refusal is None:
                self._since_bytes += size_bytes
            return refusal

    def release(self, size_bytes: int) -> None:
        with self._lock:
            self._since_bytes = max(0, self._since_bytes - size_bytes)

    def _refusal(self, size_bytes: int) -> str | None:
        # the setting's name first: a C-STORE Error Comment keeps only 64 characters
        if size_bytes > self.max_dataset_bytes:
            return (
                f"MVCT_GUIDE_DICOM_MAX_DATASET_MB exceeded: {size_bytes / _MB:.2f} MB > "
                f"{self.max_dataset_bytes / _MB:g} MB; this data set is not accepted"
            )
        now = time.monotonic()
        if now - self._measured_at > self._remeasure_s:
            self._measured_bytes, self._since_bytes, self._measured_at = self._measure(), 0, now
        backlog = self._measured_bytes + self._since_bytes
        if backlog + size_bytes > self._quota_bytes:
            return (
                f"MVCT_GUIDE_DICOM_INBOX_QUOTA_MB reached ({self._quota_bytes / _MB:g} MB): the "
                f"inbox holds {backlog / _MB:.1f} MB not yet used; ask a physicist to handle the "
                "held series, then send again"
            )
        for path in self._watched:
            free = shutil.disk_usage(_existing(path)).free
            if free - size_bytes < self._min_free_bytes:
                return (
                    f"MVCT_GUIDE_DICOM_MIN_FREE_MB ({self._min_free_bytes / _MB:g} MB) would not "
                    f"remain free on the disk of {path} ({free / _MB:.0f} MB free); free disk "
                    "space, then send again"
                )
        return None


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (the disk is the same)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def backlog_bytes(sessions: sessionmaker[Session]) -> int:
    """Bytes of received instances still waiting: not yet in a series, in a series pending,
    waiting for its course or failed, or held for a physicist. Instances of used, discarded or
    ignored series are not backlog (their files stay within ``dicom_min_free_mb``; those of
    used and discarded series until :mod:`app.dicom.inbox_retention` removes them)."""
    waiting = [s.value for s in (SeriesState.PENDING, SeriesState.WAITING, SeriesState.FAILED)]
    with sessions() as session:
        total = session.scalar(
            select(func.coalesce(func.sum(DicomInstance.size_bytes), 0))
            .outerjoin(DicomSeries, DicomSeries.id == DicomInstance.series_id)
            .outerjoin(DicomUnassigned, DicomUnassigned.series_id == DicomInstance.series_id)
            .where(
                or_(
                    DicomInstance.series_id.is_(None),
                    DicomSeries.state.in_(waiting),
                    and_(DicomUnassigned.id.is_not(None), DicomUnassigned.resolution.is_(None)),
                )
            )
        )
    return int(total or 0)


def watched_paths(settings: Settings, inbox_root: Path) -> list[Path]:
    """The inbox, and the folder of the SQLite database when the database is a local file."""
    paths = [inbox_root]
    url = settings.resolved_database_url()
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        paths.append(Path(url.removeprefix("sqlite:///")).parent)
    return paths

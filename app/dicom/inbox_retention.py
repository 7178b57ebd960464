"""Removing received files once no one needs them: the DICOM inbox retention sweep.

What the image store owns: ingesting a received series hands its inbox files over where they lie
(:func:`app.services.ingest.files_in_place`), and :meth:`app.storage.ImageStore.place_series`
hard-links each one into ``images/<series hash>/`` (copies it when the store is on another file
system). From then on the store has its own directory entry for the bytes and never reads the
inbox again: removing the inbox entry leaves the stored series whole. The store never takes over
an inbox path itself.

An inbox file is removed only when every ``dicom_instances`` row naming it belongs to a series
last changed (``dicom_series.updated_at``) more than ``dicom_inbox_retention_days`` ago that is

* ``done``: ingested (a course's planning CT, a fraction's MVCT or verification scan, an attached
  RT object, a held series a physicist assigned; instances that arrived after it was used too), or
* discarded by a physicist (``dicom_unassigned.resolution`` ``discarded``).

Kept, whatever their age: instances not yet in a series (RT objects waiting for their course),
series pending, waiting for a course or failed (sending more instances tries them again with
every file), held for a physicist, or ignored by ``dicom_unmatched_series=ignore``; and files no
row names (the start-up orphan sweep, :meth:`app.dicom.inbox.Inbox.sweep`, handles those). The
rows stay: they are the record of what was received. Each series whose files were removed gets
one ``dicom_inbox_files_removed`` audit row.

Removing a file the store linked frees no disk space (the store's link keeps the bytes); the
space comes back from discarded series, late instances, and files the store had to copy.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db import repository as repo
from app.db.models import utcnow
from app.db.models_dicom import DicomInstance, DicomSeries, DicomUnassigned, SeriesState
from app.dicom.inbox import Inbox

log = logging.getLogger(__name__)

ACTION = "dicom_inbox_files_removed"
_CHUNK = 500  #: digests per database query
_MB = 1024 * 1024


@dataclass(frozen=True)
class RemovedFiles:
    """The inbox files of one series removed by one sweep."""

    series_id: int
    why: str  #: "ingested" or "discarded"
    files: int
    size_bytes: int


@dataclass(frozen=True)
class InboxSweep:
    series: tuple[RemovedFiles, ...] = ()
    #: bytes whose last link was removed (the rest are still the image store's)
    freed_bytes: int = 0

    @property
    def files(self) -> int:
        return sum(s.files for s in self.series)

    @property
    def size_bytes(self) -> int:
        return sum(s.size_bytes for s in self.series)


def sweep(
    inbox: Inbox,
    sessions: sessionmaker[Session],
    retention_days: float,
    now: datetime | None = None,
) -> InboxSweep:
    """Remove the inbox files of series ingested or discarded over ``retention_days`` ago."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    present = {path.stem: path for path in inbox.root.glob("??/*.dcm")}
    removable = _removable(sessions, list(present), cutoff)
    removed: dict[tuple[int, str], list[int]] = defaultdict(list)
    freed_bytes = 0
    for digest, (series_id, why) in sorted(removable.items()):
        path = present[digest]
        try:
            status = path.stat()
            path.unlink()
        except FileNotFoundError:  # another replica removed it first
            continue
        removed[(series_id, why)].append(status.st_size)
        if status.st_nlink == 1:
            freed_bytes += status.st_size
    series = tuple(
        RemovedFiles(series_id, why, len(sizes), sum(sizes))
        for (series_id, why), sizes in sorted(removed.items())
    )
    return InboxSweep(series, freed_bytes)


def _removable(
    sessions: sessionmaker[Session], digests: Sequence[str], cutoff: datetime
) -> dict[str, tuple[int, str]]:
    """Digest → (series id, why) of the files whose every row may go (module docstring)."""
    verdicts: dict[str, list[tuple[int, str] | None]] = defaultdict(list)
    with sessions() as session:
        for start in range(0, len(digests), _CHUNK):
            for digest, verdict in _verdicts(session, digests[start : start + _CHUNK], cutoff):
                verdicts[digest].append(verdict)
    removable = {}
    for digest, found in verdicts.items():
        first = found[0]
        if first is not None and all(v is not None for v in found):
            removable[digest] = first
    return removable


def _verdicts(
    session: Session, digests: Sequence[str], cutoff: datetime
) -> list[tuple[str, tuple[int, str] | None]]:
    """``(digest, (series id, why) or None)`` for every row naming one of ``digests``: None when
    that row's series still needs the file or changed after ``cutoff``."""
    rows = session.execute(
        select(
            DicomInstance.file_sha256,
            DicomSeries.id,
            DicomSeries.state,
            DicomSeries.updated_at,
            DicomUnassigned.resolution,
        )
        .outerjoin(DicomSeries, DicomSeries.id == DicomInstance.series_id)
        .outerjoin(DicomUnassigned, DicomUnassigned.series_id == DicomSeries.id)
        .where(DicomInstance.file_sha256.in_(list(digests)))
    ).all()
    verdicts: list[tuple[str, tuple[int, str] | None]] = []
    for digest, series_id, state, updated_at, resolution in rows:
        why = None
        if series_id is not None and updated_at < cutoff:
            if state == SeriesState.DONE.value:
                why = "ingested"
            elif state == SeriesState.IGNORED.value and resolution == "discarded":
                why = "discarded"
        verdicts.append((digest, None if why is None else (series_id, why)))
    return verdicts


def audit(writer: sessionmaker[Session], swept: InboxSweep, retention_days: float) -> None:
    """One ``dicom_inbox_files_removed`` audit row per series, and one log line in all."""
    if not swept.series:
        return
    log.info(
        "DICOM inbox: removed %d file(s), %.1f MB (%.1f MB of it freed, the rest is the image "
        "store's), of %d series ingested or discarded over %g days ago",
        swept.files,
        swept.size_bytes / _MB,
        swept.freed_bytes / _MB,
        len(swept.series),
        retention_days,
    )
    with writer() as session:
        for removed in swept.series:
            repo.record_audit(
                session,
                actor="system:housekeeping",
                action=ACTION,
                entity="dicom_series",
                entity_id=removed.series_id,
                detail={
                    "why": removed.why,
                    "files": removed.files,
                    "bytes": removed.size_bytes,
                    "retention_days": retention_days,
                },
            )
        session.commit()

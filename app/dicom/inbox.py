"""The inbox: every received instance is on disk (fsync) and in ``dicom_instances`` before the
sender hears "stored".

Files live in ``<data_dir>/dicom-inbox/<sha[:2]>/<sha>.dcm`` (``sha``: SHA-256 of the file, in
the DICOM File Format of PS3.10 with its meta header), built in ``dicom-inbox/.tmp`` and renamed
into place, so a file is either complete or absent. The row is written after the rename; a file
without a row (the process died in between) is removed by :meth:`Inbox.sweep` at start-up.
What is accepted, and the status answered otherwise, is :mod:`app.dicom.acceptance`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.db.models_dicom import DicomInstance
from app.dicom.acceptance import (
    DUPLICATE_KEPT_FIRST,
    OUT_OF_RESOURCES,
    SUCCESS,
    Checked,
    Received,
    StoreOutcome,
    check,
    transfer_syntax,
)

log = logging.getLogger(__name__)


_CHUNK = 1024 * 1024
_ORPHAN_MIN_AGE_S = 3600.0


class Inbox:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp"

    def ensure_dirs(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, file_sha256: str) -> Path:
        return self.root / file_sha256[:2] / f"{file_sha256}.dcm"

    def new_tmp_file(self) -> Path:
        return self.tmp / f"{uuid.uuid4().hex}.part"

    def write_tmp(self, data: bytes) -> Path:
        """``data`` in a new temporary file of the inbox, flushed to disk."""
        path = self.new_tmp_file()
        with path.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return path

    def commit_file(self, tmp: Path, file_sha256: str) -> Path:
        """Move a flushed temporary file to its final place (or drop it: same bytes are there)."""
        final = self.path_for(file_sha256)
        if final.is_file():
            tmp.unlink(missing_ok=True)
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        return final

    def sweep(self, referenced: set[str], min_age_s: float = _ORPHAN_MIN_AGE_S) -> int:
        """Remove files no row references (older than ``min_age_s``) and stale temporary files."""
        removed = 0
        limit = time.time() - min_age_s
        for path in self.root.glob("??/*.dcm"):
            if path.stem not in referenced and path.stat().st_mtime < limit:
                path.unlink(missing_ok=True)
                removed += 1
        if self.tmp.is_dir():
            for path in self.tmp.iterdir():
                if path.stat().st_mtime < limit:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def receive_file(
    inbox: Inbox,
    writer: sessionmaker[Session],
    tmp: Path,
    received: Received,
    on_series: Callable[[str], None] | None = None,
) -> StoreOutcome:
    """Check the flushed temporary file ``tmp``, keep it and add its row; the status to answer.

    ``tmp`` is consumed: moved into the inbox when stored, deleted otherwise. ``on_series`` is
    told the Series Instance UID of an acceptable instance before its row exists (so the series
    is known to be in flight before the grouper can see it).
    """
    try:
        checked = check(tmp, received)
        if not checked.stored:
            log.warning(
                "DICOM %s from %s refused (0x%04X): %s",
                received.source,
                received.sender,
                checked.status,
                checked.message,
            )
            return checked
        if on_series is not None:
            on_series(checked.series_instance_uid)
        return _keep(inbox, writer, tmp, checked, received)
    finally:
        tmp.unlink(missing_ok=True)


def _keep(
    inbox: Inbox,
    writer: sessionmaker[Session],
    tmp: Path,
    checked: Checked,
    received: Received,
) -> StoreOutcome:
    outcome = StoreOutcome(
        SUCCESS,
        checked.sop_class_uid,
        checked.sop_instance_uid,
        checked.study_instance_uid,
        checked.series_instance_uid,
    )
    try:
        digest, size = _sha256(tmp)
        duplicate = _duplicate(writer, checked.sop_instance_uid, digest)
        if duplicate is not None:
            return _note_duplicate(outcome, duplicate, digest, received)
        inbox.commit_file(tmp, digest)
        row = _row(checked, received, digest, size)
        try:
            with writer() as session:
                session.add(row)
                session.commit()
        except IntegrityError:  # the same SOP instance arrived concurrently
            duplicate = _duplicate(writer, checked.sop_instance_uid, digest)
            if duplicate is None:
                raise
            return _note_duplicate(outcome, duplicate, digest, received)
    except OSError as exc:
        log.exception("DICOM inbox write failed")
        return _failure(outcome, f"the instance could not be written ({exc.strerror or exc})")
    except SQLAlchemyError:
        log.exception("DICOM inbox database write failed")
        return _failure(outcome, "the database could not record the instance; send it again")
    return outcome


def _failure(outcome: StoreOutcome, message: str) -> StoreOutcome:
    return StoreOutcome(
        OUT_OF_RESOURCES,
        outcome.sop_class_uid,
        outcome.sop_instance_uid,
        outcome.study_instance_uid,
        outcome.series_instance_uid,
        message,
    )


def _duplicate(writer: sessionmaker[Session], sop_instance_uid: str, digest: str) -> str | None:
    """None if the instance is new; else the digest of the copy already kept."""
    with writer() as session:
        kept = session.scalar(
            select(DicomInstance.file_sha256).where(
                DicomInstance.sop_instance_uid == sop_instance_uid
            )
        )
    return None if kept is None else str(kept)


def _note_duplicate(
    outcome: StoreOutcome, kept: str, digest: str, received: Received
) -> StoreOutcome:
    if kept == digest:
        return outcome
    message = "received before with other content; the first copy is kept"
    log.warning(
        "DICOM %s from %s: SOP instance %s %s",
        received.source,
        received.sender,
        outcome.sop_instance_uid,
        message,
    )
    return StoreOutcome(
        DUPLICATE_KEPT_FIRST,
        outcome.sop_class_uid,
        outcome.sop_instance_uid,
        outcome.study_instance_uid,
        outcome.series_instance_uid,
        message,
    )


def _row(checked: Checked, received: Received, digest: str, size: int) -> DicomInstance:
    dataset = checked.dataset
    assert dataset is not None
    return DicomInstance(
        sop_instance_uid=checked.sop_instance_uid,
        sop_class_uid=checked.sop_class_uid,
        study_instance_uid=checked.study_instance_uid,
        series_instance_uid=checked.series_instance_uid,
        patient_id=_text(dataset, "PatientID", 64),
        series_description=_text(dataset, "SeriesDescription", 200),
        position_z_mm=_position_z(dataset),
        transfer_syntax_uid=str(transfer_syntax(dataset) or ""),
        file_sha256=digest,
        size_bytes=size,
        source=received.source,
        sender=received.sender[:100],
    )


def _text(dataset: Dataset, keyword: str, limit: int) -> str:
    value = dataset.get(keyword, "")
    return ("" if value is None else str(value)).strip()[:limit]


def _position_z(dataset: Dataset) -> float | None:
    try:
        value = float(dataset.ImagePositionPatient[2])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return value if value == value and abs(value) < 1e9 else None


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size

"""The inbox: every received instance is on disk (fsync) and in ``dicom_instances`` before the
sender hears "stored".

Files live in ``<data_dir>/dicom-inbox/<sha[:2]>/<sha>.dcm`` (``sha``: SHA-256 of the file, in
the DICOM File Format of PS3.10 with its meta header), built in ``dicom-inbox/.tmp`` and renamed
into place, so a file is either complete or absent. The row is written after the rename; a file
without a row (the process died in between) is removed by :meth:`Inbox.sweep` at start-up.

What is refused, with which status (C-STORE status, or STOW-RS Failure Reason, PS3.18 I.2.2):

=========================================================  =============================
the bytes are not a readable DICOM data set, or lack        0xC000 cannot understand
SOP/Series/Study Instance UID or (CT) Pixel Data
not CT Image, RT Structure Set or RT Plan Storage           0x0122 SOP class not supported
(STOW-RS; C-STORE does not negotiate others), or a
C-STORE data set whose SOP Class
is not the negotiated one                                   0xA900 does not match SOP class
Modality is not CT / RTSTRUCT / RTPLAN (as the SOP Class)  0xA900
Study Instance UID differs from the STOW-RS target study    0xA900
a compressed transfer syntax no installed decoder reads     0xC122 transfer syntax
the disk or the database failed                             0xA700 out of resources
=========================================================  =============================

An instance whose SOP Instance UID was received before is answered "stored" again, so a sender's
retry never fails and nothing already stored is replaced: the first copy is kept; when the second
copy has other bytes (another transfer syntax, or changed content) the answer is the warning
0xB101 (implementation-specific: "received before with other content; the first copy is kept").
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, CTImageStorage, RTPlanStorage, RTStructureSetStorage
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.db.models_dicom import DicomInstance

log = logging.getLogger(__name__)

SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DATA_SET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
#: implementation-specific warning: this SOP Instance UID came before with other bytes; the first
#: copy is kept (C-STORE status, STOW-RS Warning Reason)
DUPLICATE_KEPT_FIRST = 0xB101

#: the SOP classes received, and the Modality each must carry (the RT objects are a course's
#: planning package: attached by Frame of Reference, :mod:`app.dicom.rt_ingest`)
MODALITY_OF = {
    str(CTImageStorage): "CT",
    str(RTStructureSetStorage): "RTSTRUCT",
    str(RTPlanStorage): "RTPLAN",
}

_CHUNK = 1024 * 1024
_ORPHAN_MIN_AGE_S = 3600.0


@dataclass(frozen=True)
class StoreOutcome:
    """What became of one received instance; ``status`` is the DIMSE status to answer."""

    status: int
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    message: str = ""  #: why it was refused (or the duplicate note); "" for a plain success

    @property
    def stored(self) -> bool:
        """Success or a warning (0xBxxx): the instance is (or already was) kept."""
        return self.status == SUCCESS or 0xB000 <= self.status <= 0xBFFF


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


@dataclass(frozen=True)
class Received:
    """Who sent an instance and how."""

    source: str  #: "c-store" or "stow-rs"
    sender: str  #: calling AE title, or the API key's name
    expected_sop_class_uid: str | None = None  #: C-STORE: the Affected SOP Class UID
    expected_sop_instance_uid: str | None = None  #: C-STORE: the Affected SOP Instance UID
    expected_study_uid: str | None = None  #: STOW-RS to /studies/{study}


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
        checked = _check(tmp, received)
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


@dataclass(frozen=True)
class _Checked(StoreOutcome):
    dataset: Dataset | None = None


def _check(path: Path, received: Received) -> _Checked:
    try:
        dataset = dcmread(path, force=False)
    except Exception as exc:  # pydicom raises many types for a damaged file
        return _Checked(
            CANNOT_UNDERSTAND,
            message=f"not a readable DICOM instance ({type(exc).__name__}: {exc}); "
            "send the file again or re-export it",
        )
    sop_class = str(dataset.get("SOPClassUID", ""))
    sop_instance = str(dataset.get("SOPInstanceUID", ""))
    study = str(dataset.get("StudyInstanceUID", ""))
    series = str(dataset.get("SeriesInstanceUID", ""))

    def refuse(status: int, message: str) -> _Checked:
        return _Checked(status, sop_class, sop_instance, study, series, message)

    missing = [
        name
        for name, value in (
            ("SOPClassUID", sop_class),
            ("SOPInstanceUID", sop_instance),
            ("StudyInstanceUID", study),
            ("SeriesInstanceUID", series),
        )
        if not value or len(value) > 64
    ]
    if missing:
        return refuse(CANNOT_UNDERSTAND, f"missing or invalid {', '.join(missing)}")
    expected_class = received.expected_sop_class_uid
    if expected_class is not None and sop_class != expected_class:
        return refuse(
            DATA_SET_MISMATCH,
            f"the data set's SOP Class UID {sop_class} is not the one sent with it "
            f"({expected_class})",
        )
    if sop_class not in MODALITY_OF:
        status = DATA_SET_MISMATCH if expected_class is not None else SOP_CLASS_NOT_SUPPORTED
        return refuse(
            status,
            f"{UID(sop_class).name or sop_class} is not accepted: only CT Image Storage "
            "(single-frame CT slices), RT Structure Set Storage and RT Plan Storage are",
        )
    expected_instance = received.expected_sop_instance_uid
    if expected_instance is not None and sop_instance != expected_instance:
        return refuse(
            DATA_SET_MISMATCH,
            f"the data set's SOP Instance UID {sop_instance} is not the one sent with it",
        )
    modality = str(dataset.get("Modality", ""))
    if modality != MODALITY_OF[sop_class]:
        return refuse(
            DATA_SET_MISMATCH, f"Modality is {modality!r}, not {MODALITY_OF[sop_class]!r}"
        )
    if received.expected_study_uid is not None and study != received.expected_study_uid:
        return refuse(
            DATA_SET_MISMATCH,
            f"the instance belongs to study {study}, not to the study {received.expected_study_uid}"
            " of the request",
        )
    syntax = _transfer_syntax(dataset)
    if syntax is None:
        return refuse(CANNOT_UNDERSTAND, "the file meta information has no Transfer Syntax UID")
    if not decodable(syntax):
        return refuse(
            TRANSFER_SYNTAX_NOT_SUPPORTED,
            f"no installed decoder reads {syntax.name or syntax}; send it uncompressed",
        )
    pixel_problem = _pixel_problem(dataset, syntax) if sop_class == CTImageStorage else ""
    if pixel_problem:
        return refuse(CANNOT_UNDERSTAND, pixel_problem)
    return _Checked(SUCCESS, sop_class, sop_instance, study, series, dataset=dataset)


def _transfer_syntax(dataset: Dataset) -> UID | None:
    meta = getattr(dataset, "file_meta", None)
    value = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(str(value)) if value else None


def decodable(syntax: UID) -> bool:
    """Whether pydicom can read the pixels of ``syntax`` here (uncompressed, or a decoder)."""
    if not syntax.is_compressed:
        return syntax.is_transfer_syntax
    from pydicom.pixels.decoders.base import get_decoder

    try:
        return bool(get_decoder(syntax).is_available)
    except NotImplementedError:
        return False


def _pixel_problem(dataset: Dataset, syntax: UID) -> str:
    if "PixelData" not in dataset:
        return "the instance has no Pixel Data"
    if syntax.is_compressed:
        return ""
    try:
        expected = (
            int(dataset.Rows)
            * int(dataset.Columns)
            * int(dataset.get("SamplesPerPixel", 1))
            * int(dataset.BitsAllocated)
            // 8
            * int(dataset.get("NumberOfFrames", 1) or 1)
        )
    except (AttributeError, TypeError, ValueError):
        return "Rows, Columns or Bits Allocated are missing or not numbers"
    actual = len(dataset.PixelData)
    if actual < expected:
        return f"the Pixel Data is truncated ({actual} bytes, {expected} expected)"
    return ""


def _keep(
    inbox: Inbox,
    writer: sessionmaker[Session],
    tmp: Path,
    checked: _Checked,
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


def _row(checked: _Checked, received: Received, digest: str, size: int) -> DicomInstance:
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
        transfer_syntax_uid=str(_transfer_syntax(dataset) or ""),
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

"""From received files to a checked CT series ready to store: save, unpack, hash, read.

Files reach the use cases already saved: HTTP uploads are written to a private temporary folder
first (:func:`save_uploads` inside :func:`upload_folder`), files the DICOM receiver already
holds are hashed where they lie (:func:`files_in_place`) and copied only into the image store.

Runs in the web process (in a thread), so it uses only the core's DICOM reader (pydicom and
SimpleITK), never the registration engine and its ITK import.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from app.errors import PayloadTooLargeError, UnprocessableError
from app.services.patient_identity import read_name_and_birth_date
from app.storage import ImageStore, series_content_hash
from registration.compatibility import SeriesExtent
from registration.dicom_files import open_dicom_files
from registration.dicom_series import read_ct_series
from registration.errors import ArchiveTooLargeError, InputError
from registration.frames import PatientPosition
from registration.volume import CtVolume

_CHUNK = 1024 * 1024


class Upload(Protocol):
    """What ingest needs of an upload (FastAPI's ``UploadFile`` fits)."""

    filename: str | None
    file: BinaryIO


@dataclass(frozen=True)
class UploadedFiles:
    """The files of one form field, on disk in a private temporary folder, with their digests."""

    label: str  #: "MVCT" or "planning CT", used in messages
    files: tuple[tuple[Path, str], ...]  #: (path, sha256)

    @property
    def content_sha256(self) -> str:
        return series_content_hash(digest for _, digest in self.files)


@dataclass(frozen=True)
class BoundingBoxLps:
    """Axis-aligned box of the voxel centres, LPS mm."""

    min_mm: tuple[float, float, float]
    max_mm: tuple[float, float, float]


@dataclass(frozen=True)
class ParsedSeries:
    """A series the core's reader accepted, reduced to the files that make it up."""

    label: str
    files: tuple[tuple[Path, str], ...]
    content_sha256: str
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    patient_id: str
    series_description: str
    patient_position: PatientPosition
    bounds: BoundingBoxLps
    warnings: tuple[str, ...]
    patient_name: str = ""  #: as sent, "" when absent
    patient_birth_date: str = ""  #: YYYYMMDD, "" when absent

    @property
    def extent(self) -> SeriesExtent:
        """What the compatibility rule needs of this series."""
        return SeriesExtent(self.patient_position, self.bounds.min_mm[2], self.bounds.max_mm[2])


@contextlib.contextmanager
def upload_folder(store: ImageStore) -> Iterator[Path]:
    """A private temporary folder for one request's uploads, removed afterwards."""
    work = store.new_tmp_dir("upload")
    try:
        yield work
    finally:
        remove_quietly(work)


def files_in_place(label: str, paths: Iterable[Path]) -> UploadedFiles:
    """Files already saved by a receiver, hashed where they lie (no copy is made)."""
    saved = []
    for path in paths:
        with path.open("rb") as handle:
            saved.append((path, hashlib.file_digest(handle, "sha256").hexdigest()))
    if not saved:
        raise UnprocessableError(f"no {label} files were received")
    return UploadedFiles(label, tuple(saved))


def save_uploads(
    uploads: Sequence[Upload], folder: Path, label: str, max_unpacked_bytes: int
) -> UploadedFiles:
    """Write every upload to ``folder`` (a .zip is unpacked there), hashing as it goes."""
    if not uploads:
        raise UnprocessableError(f"no {label} files were sent; send the series' files or a .zip")
    folder.mkdir(parents=True, exist_ok=True)
    saved: list[tuple[Path, str]] = []
    budget = [max_unpacked_bytes]
    for index, upload in enumerate(uploads):
        # one folder per upload keeps the sender's file name, which the reader's messages quote
        target = folder / f"{index:05d}" / _safe_name(upload.filename, index)
        target.parent.mkdir()
        digest = _copy_hashing(upload.file, target)
        if _is_zip(target):
            saved.extend(_unpack(target, folder / f"{index:05d}-zip", label, budget))
            target.unlink()
        else:
            saved.append((target, digest))
    if not saved:
        raise UnprocessableError(f"the {label} upload holds no files")
    return UploadedFiles(label, tuple(saved))


def _safe_name(name: str | None, index: int) -> str:
    """The base name the sender gave, made safe for a file system; never a path."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c if c.isprintable() else "_" for c in base).strip(" .")[:120]
    return base or f"file-{index + 1}"


def _is_zip(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(132)
    return head[:4] == b"PK\x03\x04" and head[128:132] != b"DICM" and zipfile.is_zipfile(path)


def _unpack(archive: Path, folder: Path, label: str, budget: list[int]) -> list[tuple[Path, str]]:
    """The archive's members, streamed to disk by the core's reader within the limits, then
    moved under ``folder`` with the sender's names (never inflated into memory)."""
    folder.mkdir()
    out = []
    try:
        with open_dicom_files(
            archive, max_total_bytes=max(budget[0], 0), scratch_dir=folder
        ) as members:
            for number, member in enumerate(members):
                extracted = member.open()
                if not isinstance(extracted, str):  # pragma: no cover - archives give files
                    raise UnprocessableError(f"{label}: cannot read {member.name}")
                target = folder / f"{number:05d}" / _safe_name(member.name, number)
                target.parent.mkdir()
                Path(extracted).replace(target)
                with target.open("rb") as handle:
                    digest = hashlib.file_digest(handle, "sha256").hexdigest()
                budget[0] -= target.stat().st_size
                out.append((target, digest))
    except ArchiveTooLargeError as exc:
        raise PayloadTooLargeError(f"{label}: {exc}") from None
    except InputError as exc:
        raise UnprocessableError(f"{label}: {exc}") from None
    return out


def _copy_hashing(source: BinaryIO, target: Path) -> str:
    digest = hashlib.sha256()
    with target.open("wb") as out:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def parse_series(uploaded: UploadedFiles, series_uid: str | None = None) -> ParsedSeries:
    """Read the upload with the core's strict reader; its refusals become 422 with its words."""
    paths = [path for path, _ in uploaded.files]
    try:
        volume = read_ct_series(paths, series_uid)
    except InputError as exc:
        raise UnprocessableError(f"{uploaded.label}: {exc}") from None
    by_path = {str(path): (path, digest) for path, digest in uploaded.files}
    used = [by_path[name] for name in volume.source_files if name in by_path]
    if len(used) != len(volume.source_files):  # pragma: no cover - the reader returns our paths
        used = list(uploaded.files)
    name, birth_date = read_name_and_birth_date(used[0][0])
    return ParsedSeries(
        label=uploaded.label,
        files=tuple(used),
        content_sha256=series_content_hash(digest for _, digest in used),
        series_instance_uid=volume.series_instance_uid,
        study_instance_uid=volume.study_instance_uid,
        frame_of_reference_uid=volume.frame_of_reference_uid,
        patient_id=volume.patient_id,
        patient_name=name,
        patient_birth_date=birth_date,
        series_description=volume.series_description,
        patient_position=volume.patient_position,
        bounds=bounding_box(volume),
        warnings=volume.warnings,
    )


def bounding_box(volume: CtVolume) -> BoundingBoxLps:
    image = volume.image
    size = image.GetSize()
    corners = [
        image.TransformIndexToPhysicalPoint([i, j, k])
        for i in (0, size[0] - 1)
        for j in (0, size[1] - 1)
        for k in (0, size[2] - 1)
    ]
    lows = tuple(min(c[axis] for c in corners) for axis in range(3))
    highs = tuple(max(c[axis] for c in corners) for axis in range(3))
    return BoundingBoxLps(lows, highs)


def remove_quietly(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)

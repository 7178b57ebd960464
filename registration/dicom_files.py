"""Where the files of a DICOM series come from: a folder, a list of files, or a .zip archive.

:func:`open_dicom_files` turns any accepted source into a list of :class:`DicomFile` handles,
each with a short ``name`` used in error messages and a ``location`` kept as provenance. Files
are not parsed here; :mod:`registration.dicom_series` does that.

* A **folder** is searched recursively; a file called ``DICOMDIR`` is skipped (it is an index,
  not an image). Every other file must be DICOM: the reader refuses the rest, by name.
* A **list or tuple of paths** is taken as given (each path must be an existing file).
* A **.zip archive** (or any single file that is a zip archive) is never inflated into memory:
  a member is streamed to a file of a private temporary folder (removed when the block ends)
  the first time it is opened, in chunks, with a running limit. A member whose path is absolute
  or contains ``..`` makes the whole archive refused, because such an archive was made
  carelessly or with intent (the "zip slip" attack). Before any member is read, the archive is
  refused (:class:`~registration.errors.ArchiveTooLargeError`) when a member declares more than
  ``max_member_bytes`` (default :data:`MAX_ZIP_MEMBER_BYTES`), or more than 1 MiB at a
  compression ratio above :data:`MAX_ZIP_COMPRESSION_RATIO` (a "zip bomb": CT slices compress
  a few times, not a hundred), or when all members declare more than ``max_total_bytes``
  (default :data:`MAX_ZIP_UNCOMPRESSED_BYTES`). While extracting, a member that inflates to
  more than it declared is refused, and so is the member that takes the running total of the
  archive past ``max_total_bytes``.
* A **single non-zip file** is a list of one file.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from registration.errors import ArchiveTooLargeError, DicomSeriesError

__all__ = [
    "MAX_ZIP_COMPRESSION_RATIO",
    "MAX_ZIP_MEMBER_BYTES",
    "MAX_ZIP_UNCOMPRESSED_BYTES",
    "DicomFile",
    "DicomSource",
    "open_dicom_files",
]

#: What :func:`open_dicom_files` accepts.
DicomSource = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]

#: Refuse archives that expand to more than this (a CT series is a few hundred MB at most).
MAX_ZIP_UNCOMPRESSED_BYTES = 4 * 1024**3
#: Refuse an archive member larger than this (a CT slice is well under 10 MB).
MAX_ZIP_MEMBER_BYTES = 256 * 1024**2
#: Refuse a member above 1 MiB that is compressed more than this (uncompressed / compressed).
MAX_ZIP_COMPRESSION_RATIO = 100.0
_RATIO_CHECK_ABOVE_BYTES = 1024**2
_CHUNK_BYTES = 1024**2

_INDEX_FILE_NAME = "DICOMDIR"


@dataclass(frozen=True)
class DicomFile:
    """One candidate file of a series.

    ``name`` is what a person needs to find the file (relative to the folder or archive given,
    or the basename of a listed file); ``location`` is the full path, or ``archive.zip!member``
    for an archive member; ``opener`` returns something :func:`pydicom.dcmread` accepts.
    """

    name: str
    location: str
    opener: Callable[[], str | BinaryIO]

    def open(self) -> str | BinaryIO:
        return self.opener()


def describe_source(source: DicomSource) -> str:
    """A short human description of ``source`` for messages."""
    if isinstance(source, str | os.PathLike):
        return f"'{os.fspath(source)}'"
    return f"the {len(source)} files given"


@contextmanager
def open_dicom_files(
    source: DicomSource,
    *,
    max_total_bytes: int = MAX_ZIP_UNCOMPRESSED_BYTES,
    max_member_bytes: int = MAX_ZIP_MEMBER_BYTES,
    scratch_dir: Path | None = None,
) -> Iterator[list[DicomFile]]:
    """Yield the candidate files of ``source``; archives stay open until the block ends.

    The limits apply to a .zip archive (see the module docstring); its members are extracted
    into a temporary folder made in ``scratch_dir`` (default: the system's temporary folder),
    removed with everything still in it when the block ends.
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            yield _folder_files(path)
        elif path.is_file() and zipfile.is_zipfile(path):
            limits = _ZipLimits(max_total_bytes, max_member_bytes)
            with _open_zip(path) as archive:
                members = _checked_members(path, archive, limits)
                with tempfile.TemporaryDirectory(prefix="mvct-zip-", dir=scratch_dir) as folder:
                    extractor = _ZipExtractor(path, archive, Path(folder), limits)
                    yield _zip_files(path, members, extractor)
        elif path.is_file():
            yield [_path_file(path, path.name)]
        else:
            raise DicomSeriesError(
                f"'{path}' does not exist; give a folder, a .zip archive or the series' files."
            )
        return
    if not source:
        raise DicomSeriesError("No files were given; give a folder, a .zip archive or files.")
    files = []
    for item in source:
        path = Path(item)
        if not path.is_file():
            raise DicomSeriesError(
                f"'{path.name}' ({path}) is not an existing file; check the list of files given."
            )
        files.append(_path_file(path, path.name))
    yield files


def _path_file(path: Path, name: str) -> DicomFile:
    text = str(path)
    return DicomFile(name=name, location=text, opener=lambda: text)


def _folder_files(folder: Path) -> list[DicomFile]:
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    files = [
        _path_file(p, p.relative_to(folder).as_posix())
        for p in paths
        if p.name.upper() != _INDEX_FILE_NAME
    ]
    if not files:
        raise DicomSeriesError(
            f"The folder '{folder}' holds no files; give the folder that holds the CT series."
        )
    return files


@contextmanager
def _open_zip(path: Path) -> Iterator[zipfile.ZipFile]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DicomSeriesError(
            f"'{path.name}' is not a readable .zip archive ({exc}); re-create the archive."
        ) from None
    with archive:
        yield archive


@dataclass(frozen=True)
class _ZipLimits:
    total_bytes: int
    member_bytes: int


def _checked_members(
    path: Path, archive: zipfile.ZipFile, limits: _ZipLimits
) -> list[zipfile.ZipInfo]:
    """The file members, every one checked against the limits on what it declares."""
    members = [info for info in archive.infolist() if not info.is_dir()]
    for info in members:
        if _unsafe_member_name(info.filename):
            raise DicomSeriesError(
                f"The archive '{path.name}' holds a member with an unsafe path "
                f"'{info.filename}' (absolute or containing '..'); the archive is refused. "
                "Re-create it with paths relative to the series folder."
            )
        if info.file_size > limits.member_bytes:
            raise ArchiveTooLargeError(
                f"'{info.filename}' in '{path.name}' would expand to {_mib(info.file_size)}, "
                f"more than the {_mib(limits.member_bytes)} a CT slice can need; the archive is "
                "refused. Send only the series' files."
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _RATIO_CHECK_ABOVE_BYTES and ratio > MAX_ZIP_COMPRESSION_RATIO:
            raise ArchiveTooLargeError(
                f"'{info.filename}' in '{path.name}' has a compression ratio of {ratio:.0f} "
                f"({_mib(info.compress_size)} expanding to {_mib(info.file_size)}; at most "
                f"{MAX_ZIP_COMPRESSION_RATIO:.0f} is accepted): the archive is refused as a "
                "possible zip bomb. Send the series' files as they were exported."
            )
    total_bytes = sum(info.file_size for info in members)
    if total_bytes > limits.total_bytes:
        raise ArchiveTooLargeError(
            f"The archive '{path.name}' would expand to {_mib(total_bytes)}, more than the "
            f"{_mib(limits.total_bytes)} accepted; send only the series' files."
        )
    return members


def _mib(size_bytes: int) -> str:
    mib = size_bytes / 1024**2
    return f"{mib:.1f} MiB" if mib < 10 else f"{mib:.0f} MiB"


def _zip_files(
    path: Path, members: list[zipfile.ZipInfo], extractor: _ZipExtractor
) -> list[DicomFile]:
    files = [
        DicomFile(
            name=info.filename,
            location=f"{path}!{info.filename}",
            opener=lambda info=info: extractor.extract(info),  # type: ignore[misc]
        )
        for info in members
        if Path(info.filename).name.upper() != _INDEX_FILE_NAME
    ]
    if not files:
        raise DicomSeriesError(f"The archive '{path.name}' holds no files.")
    return files


class _ZipExtractor:
    """Streams members to files of ``folder`` on first use, counting what the archive gave."""

    def __init__(
        self, path: Path, archive: zipfile.ZipFile, folder: Path, limits: _ZipLimits
    ) -> None:
        self._path = path
        self._archive = archive
        self._folder = folder
        self._limits = limits
        self._extracted: dict[str, str] = {}
        self._total_bytes = 0

    def extract(self, info: zipfile.ZipInfo) -> str:
        done = self._extracted.get(info.filename)
        if done is not None:
            return done
        target = self._folder / f"{len(self._extracted):06d}.dcm"
        try:
            written = self._copy(info, target)
        except (RuntimeError, NotImplementedError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
            target.unlink(missing_ok=True)
            raise DicomSeriesError(
                f"'{info.filename}' in '{self._path.name}' cannot be extracted ({exc}); "
                "re-create the archive without encryption."
            ) from None
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        self._total_bytes += written
        self._extracted[info.filename] = str(target)
        return str(target)

    def _copy(self, info: zipfile.ZipInfo, target: Path) -> int:
        written = 0
        with self._archive.open(info) as source, target.open("wb") as out:
            while chunk := source.read(_CHUNK_BYTES):
                written += len(chunk)
                if written > info.file_size:
                    raise DicomSeriesError(
                        f"'{info.filename}' in '{self._path.name}' expands to more than the "
                        f"{info.file_size} bytes it declares; the archive is damaged or forged."
                    )
                if self._total_bytes + written > self._limits.total_bytes:
                    raise ArchiveTooLargeError(
                        f"The archive '{self._path.name}' expands to more than the "
                        f"{_mib(self._limits.total_bytes)} accepted (at '{info.filename}'); "
                        "send only the series' files."
                    )
                out.write(chunk)
        return written


def _unsafe_member_name(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    drive = len(name) >= 2 and name[1] == ":"
    return name.startswith(("/", "\\")) or drive or ".." in parts

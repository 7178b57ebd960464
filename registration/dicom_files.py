"""Where the files of a DICOM series come from: a folder, a list of files, or a .zip archive.

:func:`open_dicom_files` turns any accepted source into a list of :class:`DicomFile` handles,
each with a short ``name`` used in error messages and a ``location`` kept as provenance. Files
are not parsed here; :mod:`registration.dicom_series` does that.

* A **folder** is searched recursively; a file called ``DICOMDIR`` is skipped (it is an index,
  not an image). Every other file must be DICOM: the reader refuses the rest, by name.
* A **list or tuple of paths** is taken as given (each path must be an existing file).
* A **.zip archive** (or any single file that is a zip archive) is read in memory, member by
  member. A member whose path is absolute or contains ``..`` makes the whole archive refused,
  because such an archive was made carelessly or with intent (the "zip slip" attack); so is an
  archive that would expand to more than :data:`MAX_ZIP_UNCOMPRESSED_BYTES`.
* A **single non-zip file** is a list of one file.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from registration.errors import DicomSeriesError

__all__ = ["MAX_ZIP_UNCOMPRESSED_BYTES", "DicomFile", "DicomSource", "open_dicom_files"]

#: What :func:`open_dicom_files` accepts.
DicomSource = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]

#: Refuse archives that expand to more than this (a CT series is a few hundred MB at most).
MAX_ZIP_UNCOMPRESSED_BYTES = 4 * 1024**3

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
def open_dicom_files(source: DicomSource) -> Iterator[list[DicomFile]]:
    """Yield the candidate files of ``source``; archives stay open until the block ends."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            yield _folder_files(path)
        elif path.is_file() and zipfile.is_zipfile(path):
            with _open_zip(path) as archive:
                yield _zip_files(path, archive)
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


def _zip_files(path: Path, archive: zipfile.ZipFile) -> list[DicomFile]:
    members = [info for info in archive.infolist() if not info.is_dir()]
    for info in members:
        if _unsafe_member_name(info.filename):
            raise DicomSeriesError(
                f"The archive '{path.name}' holds a member with an unsafe path "
                f"'{info.filename}' (absolute or containing '..'); the archive is refused. "
                "Re-create it with paths relative to the series folder."
            )
    total_bytes = sum(info.file_size for info in members)
    if total_bytes > MAX_ZIP_UNCOMPRESSED_BYTES:
        raise DicomSeriesError(
            f"The archive '{path.name}' would expand to {total_bytes / 1024**3:.1f} GiB, more "
            f"than the {MAX_ZIP_UNCOMPRESSED_BYTES / 1024**3:.0f} GiB a CT series can need; "
            "send only the series' files."
        )
    files = [
        _member_file(path, archive, info)
        for info in members
        if Path(info.filename).name.upper() != _INDEX_FILE_NAME
    ]
    if not files:
        raise DicomSeriesError(f"The archive '{path.name}' holds no files.")
    return files


def _unsafe_member_name(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    drive = len(name) >= 2 and name[1] == ":"
    return name.startswith(("/", "\\")) or drive or ".." in parts


def _member_file(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> DicomFile:
    def opener() -> BinaryIO:
        try:
            return io.BytesIO(archive.read(info))
        except (RuntimeError, NotImplementedError, zipfile.BadZipFile, OSError) as exc:
            raise DicomSeriesError(
                f"'{info.filename}' in '{path.name}' cannot be extracted ({exc}); "
                "re-create the archive without encryption."
            ) from None

    return DicomFile(name=info.filename, location=f"{path}!{info.filename}", opener=opener)

"""Where a series' files come from (registration/dicom_files.py): the limits on .zip archives.

A zip member is never inflated into memory: it is streamed to disk with a running limit, and a
member whose declared size or compression ratio is beyond the limits is refused before a byte of
it is read. Memory is measured with tracemalloc (Python allocations, where an inflated member
would land), bounded far below the member's size.
"""

from __future__ import annotations

import tracemalloc
import zipfile
from pathlib import Path

import pytest
from zip_bomb import write_zip_bomb

from registration.dicom_files import (
    MAX_ZIP_COMPRESSION_RATIO,
    MAX_ZIP_MEMBER_BYTES,
    open_dicom_files,
)
from registration.dicom_series import read_ct_series
from registration.errors import ArchiveTooLargeError, DicomSeriesError

MIB = 1024 * 1024


def test_a_small_zip_with_one_huge_compressible_member_is_refused_without_inflating_it(
    tmp_path: Path,
) -> None:
    archive = write_zip_bomb(tmp_path / "upload.zip", member_mib=200)
    assert archive.stat().st_size < 1 * MIB

    tracemalloc.start()
    try:
        with pytest.raises(ArchiveTooLargeError, match="compression ratio") as caught:
            read_ct_series(archive)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak_bytes < 16 * MIB, f"{peak_bytes / MIB:.0f} MiB allocated while refusing it"
    assert "CT.0001.dcm" in str(caught.value) and "upload.zip" in str(caught.value)
    assert list(tmp_path.iterdir()) == [archive]  # nothing was extracted beside it


def test_a_member_declared_larger_than_the_member_limit_is_refused_before_reading(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("CT.0001.dcm", b"x" * MIB)

    with (
        pytest.raises(ArchiveTooLargeError, match=r"CT\.0001\.dcm"),
        open_dicom_files(archive, max_member_bytes=MIB // 2),
    ):
        pass
    assert MAX_ZIP_MEMBER_BYTES >= 64 * MIB and MAX_ZIP_COMPRESSION_RATIO >= 20


def test_members_are_extracted_once_to_disk_and_removed_when_the_block_ends(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for number in range(3):
            zf.writestr(f"CT.{number:04d}.dcm", bytes([number]) * (3 * MIB // 2))

    with open_dicom_files(archive, scratch_dir=tmp_path) as files:
        first = files[0].open()
        assert isinstance(first, str) and Path(first).parent.parent == tmp_path
        assert Path(first).read_bytes() == bytes([0]) * (3 * MIB // 2)
        assert files[0].open() == first
    assert not Path(first).exists()
    assert list(tmp_path.iterdir()) == [archive]


def test_an_archive_whose_members_declare_more_than_the_total_limit_is_refused(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for number in range(3):
            zf.writestr(f"CT.{number:04d}.dcm", bytes(2 * MIB))

    with (
        pytest.raises(ArchiveTooLargeError, match=r"6\.0 MiB, more than the 4\.0 MiB"),
        open_dicom_files(archive, max_total_bytes=4 * MIB),
    ):
        pass


def test_a_member_whose_stream_is_longer_than_declared_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("CT.0001.dcm", bytes(2 * MIB))
    data = bytearray(archive.read_bytes())
    # lie in both headers: declare 1 MiB instead of 2 MiB (uncompressed size, offset 22 / 24)
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    data[local + 22 : local + 26] = MIB.to_bytes(4, "little")
    data[central + 24 : central + 28] = MIB.to_bytes(4, "little")
    archive.write_bytes(bytes(data))

    with open_dicom_files(archive) as files, pytest.raises(DicomSeriesError):
        files[0].open()

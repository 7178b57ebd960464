"""The content-addressed image store under ``<data_dir>/images``.

A stored series lives in ``images/<sha[:2]>/<sha>/`` where ``sha`` is the series content hash
(:func:`series_content_hash`: SHA-256 over the sorted SHA-256 digests of its files), each file named
``<file sha256>.dcm``. A series directory is built in ``<data_dir>/tmp`` and renamed into place, so
it is either complete or absent. Callers hold :meth:`ImageStore.lock` for a hash from before they
place its directory until their database transaction has committed or been rolled back, and remove
what they placed when it rolled back; :meth:`ImageStore.sweep` at start-up removes anything left
by a process that died in between.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

_CHUNK = 1024 * 1024


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def series_content_hash(file_digests: Iterable[str]) -> str:
    """Same files, in any order and under any names → same hash."""
    joined = "\n".join(sorted(file_digests))
    return hashlib.sha256(joined.encode("ascii")).hexdigest()


class ImageStore:
    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def ensure_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def series_dir(self, content_sha256: str) -> Path:
        return self.root / content_sha256[:2] / content_sha256

    def series_files(self, content_sha256: str) -> list[Path]:
        return sorted(self.series_dir(content_sha256).glob("*.dcm"))

    def new_tmp_dir(self, label: str) -> Path:
        path = self.tmp / f"{label}-{uuid.uuid4().hex}"
        path.mkdir(parents=True)
        return path

    @contextlib.contextmanager
    def lock(self, hashes: Iterable[str]) -> Iterator[None]:
        """Hold the per-hash locks (taken in sorted order, so two callers cannot deadlock)."""
        with contextlib.ExitStack() as stack:
            for content_sha256 in sorted(set(hashes)):
                with self._locks_guard:
                    lock = self._locks.setdefault(content_sha256, threading.Lock())
                stack.enter_context(lock)
            yield

    def place_series(
        self, files: Sequence[tuple[Path, str]], content_sha256: str
    ) -> tuple[Path, bool]:
        """Copy ``(path, file_sha256)`` pairs into the store; ``(directory, created)``.

        ``created`` is False when the series was already there (nothing is written then).
        """
        final = self.series_dir(content_sha256)
        if final.is_dir():
            return final, False
        staging = self.new_tmp_dir("series")
        try:
            for path, digest in files:
                target = staging / f"{digest}.dcm"
                if not target.exists():
                    _link_or_copy(path, target)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return final, True

    def remove_series(self, content_sha256: str) -> None:
        shutil.rmtree(self.series_dir(content_sha256), ignore_errors=True)
        with contextlib.suppress(OSError):
            self.series_dir(content_sha256).parent.rmdir()  # only if empty

    def stored_hashes(self) -> set[str]:
        if not self.root.is_dir():
            return set()
        return {p.name for p in self.root.glob("??/*") if p.is_dir()}

    def sweep(self, referenced: set[str]) -> list[str]:
        """Remove series no database row references and every leftover temporary directory.

        Call only when no request is in flight (at start-up). Returns what was removed.
        """
        removed = []
        for content_sha256 in sorted(self.stored_hashes() - referenced):
            self.remove_series(content_sha256)
            removed.append(content_sha256)
        if self.tmp.is_dir():
            for leftover in self.tmp.iterdir():
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
                removed.append(f"tmp/{leftover.name}")
        return removed


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # same file system: no second copy of the bytes
    except OSError:
        shutil.copyfile(source, target)

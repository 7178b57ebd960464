"""The content-addressed image store under ``<data_dir>/images``.

A stored series lives in ``images/<sha[:2]>/<sha>/`` where ``sha`` is the series content hash
(:func:`series_content_hash`: SHA-256 over the sorted SHA-256 digests of its files), each file named
``<file sha256>.dcm``. A series directory is built in ``<data_dir>/tmp`` and renamed into place, so
it is either complete or absent. Callers hold :meth:`ImageStore.lock` for a hash from before they
place its directory until their database transaction has committed or been rolled back, and remove
what they placed when it rolled back; :meth:`ImageStore.sweep` at start-up removes anything left
by a process that died in between.

Several processes (API replicas, possibly on several hosts sharing the directory) may write the
store at once: then :meth:`ImageStore.lock` also takes a ``shared_lock`` that holds across
processes (a PostgreSQL advisory lock, :mod:`app.jobs.locks`), and :meth:`ImageStore.sweep` spares
recent files another process may be writing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
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


#: ``shared_lock(sorted_hashes)``: a lock on those hashes that other processes respect too
SharedLock = Callable[[list[str]], AbstractContextManager[None]]


class ImageStore:
    def __init__(self, root: Path, tmp: Path, shared_lock: SharedLock | None = None) -> None:
        self.root = root
        self.tmp = tmp
        self._shared_lock = shared_lock
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
        """Hold the per-hash locks (taken in sorted order, so two callers cannot deadlock).

        First this process's thread locks, then the shared lock other processes see, if any.
        """
        wanted = sorted(set(hashes))
        with contextlib.ExitStack() as stack:
            for content_sha256 in wanted:
                with self._locks_guard:
                    lock = self._locks.setdefault(content_sha256, threading.Lock())
                stack.enter_context(lock)
            if self._shared_lock is not None:
                stack.enter_context(self._shared_lock(wanted))
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

    def sweep(self, referenced: set[str], min_age_s: float = 0.0) -> list[str]:
        """Remove series no database row references and every leftover temporary directory.

        Call at start-up. With ``min_age_s`` 0 no request may be in flight in any process; with
        replicas, items modified less than ``min_age_s`` ago are kept (someone may be writing
        them). Returns what was removed.
        """
        cutoff = time.time() - min_age_s
        removed = []
        for content_sha256 in sorted(self.stored_hashes() - referenced):
            if min_age_s and _mtime(self.series_dir(content_sha256)) > cutoff:
                continue
            self.remove_series(content_sha256)
            removed.append(content_sha256)
        if self.tmp.is_dir():
            for leftover in self.tmp.iterdir():
                if min_age_s and _mtime(leftover) > cutoff:
                    continue
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
                removed.append(f"tmp/{leftover.name}")
        return removed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # same file system: no second copy of the bytes
    except OSError:
        shutil.copyfile(source, target)

"""Locks on image-store hashes that hold across processes and hosts (scale-out mode only).

Two replicas receiving the same series must not both place, or one remove what the other is
committing (:meth:`app.storage.ImageStore.lock`). On PostgreSQL a session-level advisory lock per
hash does it for every host that shares the database; on SQLite (one host by definition) an
``flock`` on one of 256 lock files under ``<data_dir>/locks``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, text

from app.storage import SharedLock


def shared_lock(engine: Engine, data_dir: Path) -> SharedLock:
    if engine.dialect.name == "postgresql":
        return _advisory_lock(engine)
    return _file_lock(data_dir / "locks")


def advisory_key(content_sha256: str) -> int:
    """60 bits of the hash: a non-negative PostgreSQL bigint."""
    return int(content_sha256[:15], 16)


def _advisory_lock(engine: Engine) -> SharedLock:
    @contextlib.contextmanager
    def lock(hashes: list[str]) -> Iterator[None]:
        with engine.connect() as connection:
            try:
                for content_sha256 in hashes:  # sorted by the caller: no deadlock
                    connection.execute(
                        text("SELECT pg_advisory_lock(:key)"), {"key": advisory_key(content_sha256)}
                    )
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock_all()"))

    return lock


def _file_lock(folder: Path) -> SharedLock:
    @contextlib.contextmanager
    def lock(hashes: list[str]) -> Iterator[None]:
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            for stripe in sorted({h[:2] for h in hashes}):
                fd = os.open(folder / f"{stripe}.lock", os.O_RDWR | os.O_CREAT, 0o644)
                stack.callback(os.close, fd)  # closing releases the lock
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield

    return lock

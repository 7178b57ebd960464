"""The record key: the secret that makes the record chain (app/db/record_chain.py) unforgeable.

It must not live in the database. ``MVCT_GUIDE_RECORD_KEY`` (at least 32 characters) wins; else
the key file ``MVCT_GUIDE_RECORD_KEY_FILE`` (default ``<data_dir>/record.key``), created at first
start with 32 random bytes (hex) and mode 0600. Every service replica and queue worker of one
database needs the same key: in scale-out mode they share the data directory, or set the variable.
Losing the key does not lose records, but their chain can no longer be checked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.config import Settings

log = logging.getLogger(__name__)
MIN_KEY_CHARS = 32


class RecordKeyError(Exception):
    pass


def record_key_for(settings: Settings) -> bytes:
    """The key of ``settings``' deployment, read or created."""
    return load_record_key(
        settings.record_key.get_secret_value(), settings.resolved_record_key_file
    )


def load_record_key(env_key: str, key_file: Path) -> bytes:
    """The key from ``env_key`` if set, else from ``key_file`` (created if missing)."""
    if env_key:
        if len(env_key) < MIN_KEY_CHARS:
            raise RecordKeyError(
                f"MVCT_GUIDE_RECORD_KEY has {len(env_key)} characters; it needs at least "
                f"{MIN_KEY_CHARS} (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        return env_key.encode("utf-8")
    if not key_file.exists():
        _create(key_file)
    mode = stat.S_IMODE(key_file.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "the record key file %s is readable by others (mode %o): chmod 600", key_file, mode
        )
    text = key_file.read_text(encoding="ascii").strip()
    if len(text) < MIN_KEY_CHARS:
        raise RecordKeyError(f"the record key file {key_file} holds no key (or a short one)")
    return text.encode("ascii")


def _create(key_file: Path) -> None:
    """Write a new key atomically: a private temporary file, then a link that fails if another
    process created the key meanwhile (then that key is used)."""
    key_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = key_file.with_name(f".{key_file.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_hex(32) + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, key_file)
            log.warning(
                "created the record key %s: back it up, keep it out of the database", key_file
            )
    finally:
        tmp.unlink(missing_ok=True)

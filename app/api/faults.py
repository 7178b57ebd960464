"""Infrastructure faults as clear answers instead of a bare 500.

* the database cannot be reached (server down, refusing connections, connection lost, pool
  exhausted, SQLite busy) → **503** ``{"detail": ...}`` with ``Retry-After``; the request's
  transaction was rolled back, so nothing of it was stored;
* the data directory is full (``ENOSPC``, ``EDQUOT``, or SQLite's "database or disk is full")
  → **507** ``{"detail": ...}``; the upload's temporary files are removed and a series directory
  is only ever renamed into place complete, so nothing half-written stays.

Any other ``OSError`` is re-raised (a 500, as before).
"""

from __future__ import annotations

import errno
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

log = logging.getLogger(__name__)
RETRY_AFTER_S = 10
DATABASE_UNAVAILABLE = (
    "the database is not reachable at the moment; nothing of this request was stored. "
    "Send it again in a minute; if this persists, ask the physicist to check the database server"
)
STORAGE_FULL = (
    "the image store is full; nothing of this upload was stored. Ask the physicist to free space "
    "in the data directory (MVCT_GUIDE_DATA_DIR), then send it again"
)
_FULL = {errno.ENOSPC, errno.EDQUOT}


def install(app: FastAPI) -> None:
    for database_error in (OperationalError, InterfaceError, PoolTimeoutError):
        app.add_exception_handler(database_error, _database_error)
    app.add_exception_handler(OSError, _os_error)  # type: ignore[arg-type]


async def _database_error(_: Request, exc: Exception) -> JSONResponse:
    if "disk is full" in str(exc):  # SQLite: SQLITE_FULL
        return _storage_full()
    # the message may hold the server's address, never a password: log the class only
    log.warning("database unavailable: %s", type(exc.__cause__ or exc).__name__)
    return JSONResponse(
        {"detail": DATABASE_UNAVAILABLE},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _os_error(_: Request, exc: OSError) -> JSONResponse:
    if exc.errno not in _FULL:
        raise exc
    return _storage_full()


def _storage_full() -> JSONResponse:
    log.error("the data directory is full")
    return JSONResponse({"detail": STORAGE_FULL}, status_code=507)

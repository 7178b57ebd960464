"""Building the SQLAlchemy engine and session factory for a database URL.

SQLite gets, on every new connection: WAL journal, foreign keys ON and a busy timeout. Two
session factories share one engine: :func:`make_session_factory` for reads (a deferred ``BEGIN``:
in WAL mode readers never wait for writers) and :func:`make_writer_factory` for transactions that
write, which start with ``BEGIN IMMEDIATE`` on SQLite — the write lock is taken up front, so two
writers queue behind the busy timeout instead of one failing half-way with "database is locked".
On PostgreSQL both are ordinary transactions.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, *, sqlite_busy_timeout_ms: int = 30_000) -> Engine:
    """An engine for ``url``; nothing connects until first use."""
    if is_sqlite(url):
        engine = create_engine(url, connect_args={"timeout": sqlite_busy_timeout_ms / 1000})
        _configure_sqlite(engine, sqlite_busy_timeout_ms)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


_IMMEDIATE = "mvct_guide_sqlite_immediate"


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for reading (they may write, but concurrent writers may then fail on SQLite)."""
    return sessionmaker(engine, expire_on_commit=False)


def make_writer_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for transactions that write: the SQLite write lock is taken at BEGIN."""
    return sessionmaker(engine.execution_options(**{_IMMEDIATE: True}), expire_on_commit=False)

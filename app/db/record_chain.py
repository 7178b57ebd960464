"""Tamper evidence for the signed records: an HMAC chain over signatures and audit events.

Triggers (:mod:`app.db.append_only`) stop the service's own database user; a person who can edit
the database file (or is the database's superuser) can drop them and rewrite a signature, and
recompute its SHA-256. The chain makes that visible without trusting the database:

* every row inserted into a chained table (``signoffs``, ``audit_events``) gets a link in
  ``record_chain`` in the same transaction: ``seq`` (1, 2, 3 … without gaps), the table and row
  id, ``row_sha256`` = SHA-256 of the row's canonical form, and
  ``mac = HMAC-SHA256(key, canonical({"prev_mac", "row_id", "row_sha256", "seq", "table"}))``
  where ``prev_mac`` is the previous link's MAC (64 zeros for the first);
* the key is not in the database (``MVCT_GUIDE_RECORD_KEY`` or a key file, see
  :mod:`app.record_key`), so a link cannot be forged, and a changed, removed or re-ordered row
  breaks the chain at a named place;
* :func:`verify_chain` (``mvct-guide audit verify``) walks every link and names the first broken
  one, and reports rows that have no link (inserted behind the service's back).

Canonical row form: ``{"row": {column: value, …}, "table": name}`` with every column whose value
is not NULL (so a nullable column added by a later migration leaves older rows' digests intact),
datetimes as ``2026-11-27T13:24:23.345163Z``, JSON as stored, serialised like the signed record
(:func:`app.db.signoff_repo.canonical_json`: keys sorted, no whitespace, ASCII).

Concurrency: the links are written in ``before_commit``, after the last flush. On PostgreSQL a
transaction-scoped advisory lock serialises the few transactions that append links (taken just
before the chain head is read, after every other row lock of the transaction, so it cannot
deadlock); SQLite writers already hold the database write lock. Not covered: deleting the newest
links together with their rows (truncating the tail) — compare ``audit verify``'s head with a
copy kept elsewhere to see that.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, event, func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import AuditEvent, Base, utcnow
from app.db.models_chain import RecordLink
from app.db.models_signoff import Signoff

log = logging.getLogger(__name__)

CHAINED: tuple[str, ...] = (AuditEvent.__tablename__, Signoff.__tablename__)
GENESIS_MAC = "0" * 64
_KEY = "mvct_guide_record_key"
_PENDING = "mvct_guide_chain_pending"
_ADVISORY_KEY = 0x6D766368  # "mvch"
_BATCH = 500


# --- writing ----------------------------------------------------------------------------------


KeySource = Callable[[], bytes]


def install(factory: sessionmaker[Session], key: KeySource) -> None:
    """Sessions of ``factory`` link every signature and audit event they insert, keyed by
    ``key()`` — read when first needed (and then kept), so building a factory touches no file."""
    factory.configure(info={_KEY: functools.cache(key)})
    event.listen(factory, "after_flush", _collect)
    event.listen(factory, "before_commit", _link_pending)
    event.listen(factory, "after_rollback", _forget)


def key_of(session: Session) -> bytes | None:
    source = session.info.get(_KEY)
    if source is None:
        return None
    key = source()
    if not isinstance(key, bytes) or len(key) < 16:
        raise ValueError("the record key must be at least 16 bytes")
    return key


def _collect(session: Session, _flush_context: Any) -> None:
    pending: list[tuple[str, int]] = session.info.setdefault(_PENDING, [])
    for instance in session.new:
        if isinstance(instance, (AuditEvent, Signoff)):
            pending.append((instance.__tablename__, int(instance.id)))


def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _link_pending(session: Session) -> None:
    session.flush()
    pending = session.info.pop(_PENDING, [])
    key = key_of(session)
    if not pending or key is None:
        return
    _lock_chain(session)
    head = session.execute(
        select(RecordLink.seq, RecordLink.mac).order_by(RecordLink.seq.desc()).limit(1)
    ).first()
    seq, prev_mac = (0, GENESIS_MAC) if head is None else (int(head[0]), str(head[1]))
    for table_name, row_id in sorted(set(pending), key=lambda item: (item[1], item[0])):
        row_sha256 = row_digest(session, table_name, row_id)
        if row_sha256 is None:  # rolled back in a savepoint: nothing to link
            continue
        seq += 1
        prev_mac = link_mac(key, seq, table_name, row_id, row_sha256, prev_mac)
        session.execute(
            insert(RecordLink).values(
                seq=seq,
                table_name=table_name,
                row_id=row_id,
                row_sha256=row_sha256,
                mac=prev_mac,
                linked_at=utcnow(),
            )
        )


def _lock_chain(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_KEY})


def link_unlinked_rows(factory: sessionmaker[Session]) -> int:
    """At start: a chain that is still empty adopts the rows written before it existed.

    Only an empty chain does: once it has links, an unlinked row is a finding of
    :func:`verify_chain`, never adopted. Returns how many rows were linked.
    """
    with factory() as session:
        if session.scalar(select(func.count()).select_from(RecordLink)):
            return 0
        _lock_chain(session)
        if session.scalar(select(func.count()).select_from(RecordLink)):
            return 0
        pending = [
            (name, int(row_id))
            for name in CHAINED
            for row_id in session.scalars(select(_table(name).c.id).order_by(_table(name).c.id))
        ]
        if not pending:
            return 0
        session.info[_PENDING] = pending
        session.commit()
        log.warning("record chain started: %d existing row(s) linked", len(pending))
        return len(pending)


# --- the canonical forms ------------------------------------------------------------------------


def _table(name: str) -> Table:
    table = Base.metadata.tables[name]
    assert isinstance(table, Table)
    return table


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        from app.db.signoff_repo import utc_text

        return utc_text(value)
    return value


def canonical_row(table_name: str, row: Any) -> bytes:
    values = {column: _plain(value) for column, value in row._mapping.items() if value is not None}
    document = {"row": values, "table": table_name}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
        "ascii"
    )


def row_digest(session: Session, table_name: str, row_id: int) -> str | None:
    """SHA-256 of the stored row's canonical form; None if there is no such row."""
    table = _table(table_name)
    row = session.execute(select(table).where(table.c.id == row_id)).first()
    return None if row is None else hashlib.sha256(canonical_row(table_name, row)).hexdigest()


def link_mac(key: bytes, seq: int, table_name: str, row_id: int, row_sha256: str, prev: str) -> str:
    message = {
        "prev_mac": prev,
        "row_id": row_id,
        "row_sha256": row_sha256,
        "seq": seq,
        "table": table_name,
    }
    payload = json.dumps(message, sort_keys=True, separators=(",", ":")).encode("ascii")
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


# --- checking -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    links: int  #: links checked
    head_seq: int
    head_mac: str
    first_broken: str | None  #: what is wrong, at the first broken link (None: intact)
    unlinked: tuple[str, ...] = ()  #: rows without a link, e.g. "audit_events 41"

    @property
    def intact(self) -> bool:
        return self.first_broken is None and not self.unlinked


def verify_chain(session: Session, key: bytes) -> ChainReport:
    """Walk the whole chain in ``seq`` order and name the first broken link."""
    checked, prev_mac, problem = 0, GENESIS_MAC, None
    for link in _links(session):
        checked += 1
        problem = _check_link(session, key, link, checked, prev_mac)
        if problem is not None:
            break
        prev_mac = link.mac
    unlinked = tuple(_unlinked(session)) if problem is None else ()
    return ChainReport(
        checked, checked if problem is None else checked - 1, prev_mac, problem, unlinked
    )


def link_is_intact(session: Session, table_name: str, row_id: int) -> bool:
    """Does this row's own link hold (its digest and its MAC over the previous link's MAC)?

    What the review page shows next to a signature; the whole chain is checked by
    :func:`verify_chain`. False without a key, a link, or when either does not match.
    """
    key = key_of(session)
    if key is None:
        return False
    link = session.scalar(
        select(RecordLink).where(RecordLink.table_name == table_name, RecordLink.row_id == row_id)
    )
    if link is None:
        return False
    prev_mac: str | None = GENESIS_MAC
    if link.seq > 1:
        prev_mac = session.scalar(select(RecordLink.mac).where(RecordLink.seq == link.seq - 1))
    return prev_mac is not None and _check_link(session, key, link, link.seq, prev_mac) is None


def _links(session: Session) -> Iterator[RecordLink]:
    after = 0
    while True:
        batch = session.scalars(
            select(RecordLink).where(RecordLink.seq > after).order_by(RecordLink.seq).limit(_BATCH)
        ).all()
        if not batch:
            return
        yield from batch
        after = batch[-1].seq


def _check_link(
    session: Session, key: bytes, link: RecordLink, expected_seq: int, prev_mac: str
) -> str | None:
    where = f"link {link.seq} ({link.table_name} row {link.row_id})"
    if link.seq != expected_seq:
        return f"link {expected_seq} is missing (the next link is {link.seq}): links were removed"
    expected = link_mac(key, link.seq, link.table_name, link.row_id, link.row_sha256, prev_mac)
    if not hmac.compare_digest(expected, link.mac):
        return (
            f"{where}: its MAC does not match (a link was changed, inserted or removed before it, "
            "or the record key is not the one the records were written with)"
        )
    if link.table_name not in CHAINED:
        return f"{where}: not a chained table"
    digest = row_digest(session, link.table_name, link.row_id)
    if digest is None:
        return f"{where}: the row was deleted"
    if not hmac.compare_digest(digest, link.row_sha256):
        return f"{where}: the row was changed after it was recorded"
    return None


def _unlinked(session: Session) -> Iterator[str]:
    for name in CHAINED:
        table = _table(name)
        linked = select(RecordLink.row_id).where(RecordLink.table_name == name)
        rows = session.scalars(
            select(table.c.id).where(table.c.id.not_in(linked)).order_by(table.c.id)
        )
        for row_id in rows:
            yield f"{name} row {row_id}"

"""The record chain: one MAC per signature and audit event, each chained to the one before.

See :mod:`app.db.record_chain` for what is hashed and how the chain is checked.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base, UtcDateTime, utcnow


class RecordLink(Base):
    """Link ``seq`` of the chain: row ``row_id`` of ``table_name`` (append-only)."""

    __tablename__ = "record_chain"
    __table_args__ = (
        UniqueConstraint("table_name", "row_id", name="uq_record_chain_table_name_row_id"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    table_name: Mapped[str] = mapped_column(String(32))
    row_id: Mapped[int] = mapped_column(Integer)
    #: SHA-256 of the row's canonical form when it was linked
    row_sha256: Mapped[str] = mapped_column(String(64))
    #: HMAC-SHA256 (hex) of this link and the previous link's MAC, keyed by the record key
    mac: Mapped[str] = mapped_column(String(64))
    linked_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

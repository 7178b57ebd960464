"""Tables of the physician review: signatures (append-only) and browser sessions.

``signoffs`` is append-only at database level (migration 0002 installs the guard): a signature is
never changed or deleted; a later signature of the same fraction supersedes the earlier one (the
current decision is the row with the highest ``id``) and names it in ``supersedes_id``
(migration 0006; app/signoff.py refuses a signature that does not name the latest one).
``record_sha256`` binds the row to the canonical signed record described in
:mod:`app.db.signoff_repo`.

``browser_sessions`` holds the server-side sessions of the review pages: the cookie carries a
random token, the table only its SHA-256, so a copy of the database opens no session.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum, unique

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base, UtcDateTime, utcnow


@unique
class Decision(StrEnum):
    APPROVED = "approved"  #: the registration's couch correction, as the machine applies it
    APPROVED_ADJUSTED = "approved_adjusted"  #: a correction the physician adjusted
    REJECTED = "rejected"  #: do not treat on this image: re-image or re-set-up


MEANINGS: dict[Decision, str] = {
    Decision.APPROVED: "Approved couch correction",
    Decision.APPROVED_ADJUSTED: "Approved adjusted couch correction",
    Decision.REJECTED: "Rejected: re-image or re-set-up the patient",
}


class Signoff(Base):
    """A physician's electronic signature of one fraction's decision (21 CFR Part 11 style)."""

    __tablename__ = "signoffs"

    id: Mapped[int] = mapped_column(primary_key=True)
    fraction_id: Mapped[int] = mapped_column(ForeignKey("fractions.id"), index=True)
    decision: Mapped[str] = mapped_column(String(32))
    #: the signed couch correction, IEC 61217 table axes; NULL when rejected
    lateral_mm: Mapped[float | None] = mapped_column(Float, default=None)
    longitudinal_mm: Mapped[float | None] = mapped_column(Float, default=None)
    vertical_mm: Mapped[float | None] = mapped_column(Float, default=None)
    pitch_deg: Mapped[float | None] = mapped_column(Float, default=None)
    roll_deg: Mapped[float | None] = mapped_column(Float, default=None)
    yaw_deg: Mapped[float | None] = mapped_column(Float, default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    #: a translation of 5 mm or more was signed on purpose (the reason says why)
    override_large_shift: Mapped[bool] = mapped_column(Boolean, default=False)
    signer_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    printed_name: Mapped[str] = mapped_column(String(200))
    meaning: Mapped[str] = mapped_column(String(200))
    signed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    #: SHA-256 (hex) of the canonical JSON of the signed record (app.db.signoff_repo)
    record_sha256: Mapped[str] = mapped_column(String(64))
    #: the signature this one replaces (the fraction's latest when it was signed); None: the first
    supersedes_id: Mapped[int | None] = mapped_column(Integer, default=None)


class BrowserSession(Base):
    """A signed-in (or, before sign-in, anonymous) browser; revocable, with an idle timeout."""

    __tablename__ = "browser_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: SHA-256 (hex) of the cookie's random token; the token itself is never stored
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    #: None until sign-in (the sign-in form needs a session for its CSRF token)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True, default=None)
    #: per-session key that signs the CSRF tokens of this session's forms (itsdangerous)
    csrf_secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)

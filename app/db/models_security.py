"""Tables of the sign-in rate limit and of REG withdrawals (migration 0006).

* ``sign_in_attempts``: one row per password check, written *before* the password is verified
  (``state`` pending) so that counting and reserving are one step (app/services/ratelimit.py);
  it becomes ``failed``, is deleted on success, or is ``refused`` (429, not verified at all).
  ``subject`` is ``u:<SHA-256 of the typed user name>`` (a password pasted into the name
  field is never stored) or ``s:<browser session id>`` for a password typed again inside a
  signed-in session. ``username`` is the name only when such a user exists. Not append-only:
  rows older than the window are deleted once their minute is in the audit trail.
* ``dicom_reg_withdrawals``: the IHE IOCM rejection note sent for a REG whose sign-off was
  superseded after it had been sent (app/dicom/reg_withdraw.py), one per REG and destination.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base, UtcDateTime, utcnow


class SignInAttempt(Base):
    __tablename__ = "sign_in_attempts"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'failed', 'reset', 'refused')", name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    subject: Mapped[str] = mapped_column(String(80), index=True)
    client: Mapped[str] = mapped_column(String(100), index=True)
    #: the user's name when the typed name is a user's; None for an unknown name
    username: Mapped[str | None] = mapped_column(String(64), default=None)
    #: pending (being verified), failed, reset (a failure before a success: counts for the
    #: address only), refused (429 without a check)
    state: Mapped[str] = mapped_column(String(8))
    #: already summed up in the audit trail (one ``sign_in_failed`` row per user and minute)
    audited: Mapped[bool] = mapped_column(Boolean, default=False)


class DicomRegWithdrawal(Base):
    __tablename__ = "dicom_reg_withdrawals"
    __table_args__ = (
        UniqueConstraint("reg_export_id", name="uq_dicom_reg_withdrawals_reg_export_id"),
        CheckConstraint("status IN ('sent', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: the sent REG (``dicom_reg_exports`` row) this note withdraws
    reg_export_id: Mapped[int] = mapped_column(ForeignKey("dicom_reg_exports.id"))
    #: the signature that superseded the REG's sign-off
    superseded_by_signoff_id: Mapped[int] = mapped_column(Integer)
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

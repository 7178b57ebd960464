"""Schemas of the electronic signature: what a client sends to sign, what anyone may read."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from app.db.models import User
from app.db.models_signoff import Signoff
from app.db.signoff_repo import signed_correction
from app.schemas.common import CouchCorrectionOut

MAX_SHIFT_MM = 100.0
MAX_ANGLE_DEG = 15.0


class CouchCorrectionIn(BaseModel):
    """An adjusted couch correction, IEC 61217 table axes (mm, degrees)."""

    lateral_mm: float = Field(ge=-MAX_SHIFT_MM, le=MAX_SHIFT_MM)
    longitudinal_mm: float = Field(ge=-MAX_SHIFT_MM, le=MAX_SHIFT_MM)
    vertical_mm: float = Field(ge=-MAX_SHIFT_MM, le=MAX_SHIFT_MM)
    pitch_deg: float = Field(ge=-MAX_ANGLE_DEG, le=MAX_ANGLE_DEG)
    roll_deg: float = Field(ge=-MAX_ANGLE_DEG, le=MAX_ANGLE_DEG)
    yaw_deg: float = Field(ge=-MAX_ANGLE_DEG, le=MAX_ANGLE_DEG)


class SignoffRequest(BaseModel):
    """A physician's signature: their own user name and password are the signature."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    decision: Literal["approved", "rejected"]
    reason: str | None = Field(
        default=None,
        max_length=2000,
        description="required when adjusting, rejecting, or signing a translation ≥ 5 mm",
    )
    couch_correction: CouchCorrectionIn | None = Field(
        default=None,
        description="the adjusted correction to sign; absent: the registration's "
        "(as the machine applies it)",
    )
    supersedes: int | None = Field(
        default=None,
        ge=1,
        le=2**53,
        description="the id of the fraction's latest signature, when it is signed already "
        "(needs a reason; 409 when it is not the latest)",
    )


class SignoffPublic(BaseModel):
    """The current signature of a fraction (a later signature supersedes an earlier one)."""

    id: int
    decision: Literal["approved", "approved_adjusted", "rejected"]
    meaning: str = Field(examples=["Approved couch correction"])
    printed_name: str
    signer_username: str
    signed_at: datetime = Field(description="UTC")
    couch_correction: CouchCorrectionOut | None = Field(
        default=None, description="the signed correction (None when rejected)"
    )
    reason: str | None = None
    override_large_shift: bool
    record_sha256: str = Field(
        description="SHA-256 of the canonical JSON of the signed record (app/db/signoff_repo.py)"
    )
    supersedes: int | None = Field(default=None, description="the signature this one replaced")


def signoff_public(signoff: Signoff, signer: User) -> SignoffPublic:
    correction = signed_correction(signoff)
    return SignoffPublic(
        id=signoff.id,
        decision=signoff.decision,  # type: ignore[arg-type]
        meaning=signoff.meaning,
        printed_name=signoff.printed_name,
        signer_username=signer.username,
        signed_at=signoff.signed_at,
        couch_correction=None if correction is None else CouchCorrectionOut(**correction.as_dict()),
        reason=signoff.reason,
        override_large_shift=signoff.override_large_shift,
        record_sha256=signoff.record_sha256,
        supersedes=signoff.supersedes_id,
    )

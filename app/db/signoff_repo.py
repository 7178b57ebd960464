"""Signatures: the rows, the canonical signed record and its SHA-256.

The signed record
-----------------
What a physician signs is a JSON object built by :func:`signed_record` from the signature row and
the fraction it signs::

    {"schema": "mvct-guide/signoff/1",
     "fraction_id": 12, "patient_id": "P1", "course_id": 3, "fraction_number": 7,
     "mvct_sha256": "<content hash of today's MVCT series>",
     "planning_sha256": "<content hash of the planning CT series>",
     "registration_result_id": 12,            # null when the fraction has no result
     "registration_couch_correction": {...},  # what the engine proposed (machine dof), or null
     "decision": "approved" | "approved_adjusted" | "rejected",
     "couch_correction": {"lateral_mm": ..., "longitudinal_mm": ..., "vertical_mm": ...,
                          "pitch_deg": ..., "roll_deg": ..., "yaw_deg": ...},  # null if rejected
     "reason": "..." | null, "override_large_shift": false,
     "signer": {"user_id": 4, "username": "dr-a", "printed_name": "Dr A"},
     "meaning": "Approved couch correction",
     "signed_at": "2026-11-27T13:24:23.345163Z",
     "supersedes": 41}                        # only when it replaces signature 41


Canonical form: ``json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)``
encoded as ASCII — keys sorted at every level, no whitespace, non-ASCII characters as ``\\uXXXX``
escapes, numbers as Python writes floats (shortest repr that round-trips; the correction is stored
rounded to 0.01), times in UTC with microseconds and a ``Z``. ``record_sha256`` is the lower-case
hex SHA-256 of those bytes; :func:`verify` recomputes it from the stored rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import Fraction, User
from app.db.models_signoff import Decision, Signoff
from registration.couch import CouchCorrection

RECORD_SCHEMA = "mvct-guide/signoff/1"
_AXES = CouchCorrection.AXES


def latest_signoffs(session: Session, fraction_ids: Iterable[int]) -> dict[int, Signoff]:
    """The current signature of each fraction that has one (the latest by id)."""
    ids = sorted(set(fraction_ids))
    if not ids:
        return {}
    latest = (
        select(func.max(Signoff.id))
        .where(Signoff.fraction_id.in_(ids))
        .group_by(Signoff.fraction_id)
        .scalar_subquery()
    )
    rows = session.scalars(select(Signoff).where(Signoff.id.in_(latest)))
    return {row.fraction_id: row for row in rows}


def signoffs_of_fraction(session: Session, fraction_id: int) -> Sequence[Signoff]:
    """Every signature of a fraction, oldest first (the last one is current)."""
    query = select(Signoff).where(Signoff.fraction_id == fraction_id).order_by(Signoff.id)
    return session.scalars(query).all()


def signed_correction(signoff: Signoff) -> CouchCorrection | None:
    """The couch correction the physician signed; None for a rejection."""
    values = [getattr(signoff, axis) for axis in _AXES]
    if signoff.decision == Decision.REJECTED.value or any(v is None for v in values):
        return None
    return CouchCorrection(*(float(v) for v in values))


def signer_of(session: Session, signoff: Signoff) -> User:
    user = session.get(User, signoff.signer_user_id)
    assert user is not None  # a foreign key
    return user


def signed_record(signoff: Signoff, fraction: Fraction, signer: User) -> dict[str, Any]:
    """The record a signature binds (see the module docstring), from the stored rows."""
    result = fraction.result
    correction = signed_correction(signoff)
    proposed = None
    if result is not None:
        proposed = result.engine_result.couch_correction.as_dict()
    record = {
        "schema": RECORD_SCHEMA,
        "fraction_id": fraction.id,
        "patient_id": fraction.patient_id,
        "course_id": fraction.course_id,
        "fraction_number": fraction.fraction_number,
        "mvct_sha256": fraction.mvct_series.content_sha256,
        "planning_sha256": fraction.course.planning_series.content_sha256,
        "registration_result_id": None if result is None else result.id,
        "registration_couch_correction": proposed,
        "decision": signoff.decision,
        "couch_correction": None if correction is None else correction.as_dict(),
        "reason": signoff.reason,
        "override_large_shift": bool(signoff.override_large_shift),
        "signer": {
            "user_id": signer.id,
            "username": signer.username,
            "printed_name": signoff.printed_name,
        },
        "meaning": signoff.meaning,
        "signed_at": utc_text(signoff.signed_at),
    }
    if signoff.supersedes_id is not None:  # absent from first signatures (and older records)
        record["supersedes"] = signoff.supersedes_id
    return record


def canonical_json(record: dict[str, Any]) -> bytes:
    return json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def record_sha256(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(record)).hexdigest()


def utc_text(moment: datetime) -> str:
    """``2026-11-27T13:24:23.345163Z``: always microseconds, always UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def add_signoff(session: Session, signoff: Signoff, fraction: Fraction, signer: User) -> Signoff:
    """Hash the record, insert the row (the caller commits)."""
    signoff.record_sha256 = record_sha256(signed_record(signoff, fraction, signer))
    session.add(signoff)
    session.flush()
    return signoff


def verify(session: Session, signoff: Signoff) -> bool:
    """Does the stored hash still match the record rebuilt from the stored rows?"""
    fraction = session.get(Fraction, signoff.fraction_id)
    if fraction is None:
        return False
    record = signed_record(signoff, fraction, signer_of(session, signoff))
    return record_sha256(record) == signoff.record_sha256

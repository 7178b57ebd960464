"""Verification scans: an MVCT taken after the couch move, registered like a fraction.

A verification scan is stored as a fraction row of the same course and fraction number with
``verifies_fraction_id`` pointing at the fraction it checks; it runs through the same job, so
its registration result is the **residual set-up error** after the correction (its 6-DOF
correction: what would still have to move). It is not a fraction of its own: the worklist, the
shift log and the statistics leave it out, and the fraction it verifies shows it
(``verification`` in the fraction's JSON). It needs no sign-off.

It arrives by ``POST /api/v1/fractions/{id}/verification`` or over DICOM when its series
description matches the ``verification_series_pattern`` setting (then it verifies the latest
fraction of the patient received the same UTC day, see :mod:`app.dicom.series_ingest`).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.context import ServiceContext
from app.db import repository as repo
from app.db.models import Fraction
from app.errors import NotFoundError, UnprocessableError
from app.services.fractions import FractionRequest, Received, receive_fraction
from app.services.ingest import UploadedFiles


def verified_fraction(session: Session, fraction_id: int) -> Fraction:
    """The fraction a verification scan may check: it exists and is not itself a verification."""
    fraction = repo.fraction_by_id(session, fraction_id)
    if fraction is None:
        raise NotFoundError(f"fraction {fraction_id} does not exist")
    if fraction.verifies_fraction_id is not None:
        raise UnprocessableError(
            f"fraction {fraction_id} is itself a verification scan of fraction "
            f"{fraction.verifies_fraction_id}: post the verification to that fraction"
        )
    return fraction


def receive_verification(
    ctx: ServiceContext, fraction_id: int, mvct: UploadedFiles, actor: str
) -> Received:
    """Store ``mvct`` as the verification scan of ``fraction_id`` and queue its registration."""
    with ctx.sessions() as session:
        fraction = verified_fraction(session, fraction_id)
        request = FractionRequest(
            patient_id=fraction.patient_id,
            mvct=mvct,
            course_id=fraction.course_id,
            isocenter=fraction.isocenter,
            fraction_number=fraction.fraction_number,
            dof=fraction.dof,
            mode=fraction.mode,
            verifies_fraction_id=fraction.id,
            repeat_image=True,  # a further image of the same fraction number
        )
    received = receive_fraction(ctx, request, actor)
    if received.created:
        return received
    with ctx.sessions() as session:  # the same MVCT again: it must be this fraction's scan
        again = repo.fraction_by_id(session, received.fraction_id)
        if again is not None and again.verifies_fraction_id != fraction_id:
            raise UnprocessableError(
                f"this MVCT is already stored as fraction {again.id}"
                + (
                    f" (verification of fraction {again.verifies_fraction_id})"
                    if again.verifies_fraction_id is not None
                    else ""
                )
                + f", not as a verification of fraction {fraction_id}"
            )
    return received


def fraction_to_verify(session: Session, patient_id: str, at: datetime) -> Fraction | None:
    """The patient's latest fraction received on ``at``'s UTC day before ``at`` (DICOM path)."""
    day = at.astimezone(UTC).date()
    start = datetime.combine(day, time.min, UTC)
    query = (
        select(Fraction)
        .where(
            Fraction.patient_id == patient_id,
            Fraction.verifies_fraction_id.is_(None),
            Fraction.created_at >= start,
            Fraction.created_at < start + timedelta(days=1),
        )
        .order_by(Fraction.created_at.desc(), Fraction.id.desc())
        .limit(1)
    )
    return session.scalars(query).unique().first()

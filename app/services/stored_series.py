"""Stored image series: find by content, or place the files and add the row (one transaction)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.db import repository as repo
from app.db.models import ImageSeries
from app.errors import UnprocessableError
from app.services.ingest import ParsedSeries
from app.services.patient_identity import PatientIdentity, check_has_patient_id
from app.storage import ImageStore
from registration import compatibility
from registration.compatibility import SeriesExtent


def extent_of_row(row: ImageSeries) -> SeriesExtent:
    """What the compatibility rule needs of a stored series."""
    return SeriesExtent(row.patient_position, row.min_z_mm, row.max_z_mm)


def check_patient(parsed: ParsedSeries, patient_id: str) -> None:
    check_has_patient_id(identity_of_parsed(parsed))
    if parsed.patient_id != patient_id:
        raise UnprocessableError(
            f"the {parsed.label} belongs to patient ID {parsed.patient_id!r} but patient_id is "
            f"{patient_id!r}: check that the right patient and images were sent"
        )


def identity_of_parsed(parsed: ParsedSeries) -> PatientIdentity:
    return PatientIdentity(
        parsed.label, parsed.patient_id, parsed.patient_name, parsed.patient_birth_date
    )


def identity_of_row(label: str, row: ImageSeries) -> PatientIdentity:
    return PatientIdentity(label, row.patient_id, row.patient_name, row.patient_birth_date)


def check_compatible(mvct: SeriesExtent, planning: SeriesExtent) -> None:
    """The engine's own rule (:mod:`registration.compatibility`), checked before storing."""
    try:
        compatibility.check_compatible(mvct, planning)
    except compatibility.IncompatibleSeriesError as exc:
        raise UnprocessableError(str(exc)) from None


def get_or_place(
    session: Session, store: ImageStore, parsed: ParsedSeries, placed: list[str]
) -> ImageSeries:
    """The row for ``parsed``; new files go to the store and their hash onto ``placed``.

    The caller holds ``store.lock`` for the hash and removes what ``placed`` names if its
    transaction does not commit.
    """
    row = repo.series_by_hash(session, parsed.content_sha256)
    if row is not None:
        return row
    _, created = store.place_series(parsed.files, parsed.content_sha256)
    if created:
        placed.append(parsed.content_sha256)
    low, high = parsed.bounds.min_mm, parsed.bounds.max_mm
    row = ImageSeries(
        content_sha256=parsed.content_sha256,
        series_instance_uid=parsed.series_instance_uid[:64],
        study_instance_uid=parsed.study_instance_uid[:64],
        frame_of_reference_uid=parsed.frame_of_reference_uid[:64],
        patient_id=parsed.patient_id[:64],
        patient_name=parsed.patient_name[:200],
        patient_birth_date=parsed.patient_birth_date[:8],
        series_description=parsed.series_description[:200],
        patient_position=parsed.patient_position,
        n_files=len(parsed.files),
        min_x_mm=low[0],
        min_y_mm=low[1],
        min_z_mm=low[2],
        max_x_mm=high[0],
        max_y_mm=high[1],
        max_z_mm=high[2],
    )
    session.add(row)
    session.flush()
    return row


def remove_unreferenced(store: ImageStore, session: Session, placed: list[str]) -> None:
    """After a rollback: remove what this request placed and no committed row points at."""
    for content_sha256 in placed:
        if not repo.series_is_referenced(session, content_sha256):
            store.remove_series(content_sha256)

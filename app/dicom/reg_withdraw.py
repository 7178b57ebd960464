"""Withdrawing a REG already sent for a signature that was superseded later.

A C-STORE cannot be undone, so the destination is *told*: when the signature a sent REG carries
is no longer the fraction's latest (an approval rejected later, or replaced by an adjusted
one), :class:`app.dicom.reg_send.RegSender` sends an IHE IOCM *rejection note* to the same
destination — a Key Object Selection document (PS3.3 A.35.4) titled (113037, DCM, "Rejected for
Patient Safety Reasons") whose evidence names the REG instance, with the superseding decision
and its reason as Key Object Description. IOCM-aware archives hide or delete the REG; for any
other, the note is in the patient's study for a person to see. Each note is a
``dicom_reg_withdrawals`` row (sent, or failed and tried again like a REG) and an audit event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    SpatialRegistrationStorage,
    generate_uid,
)
from sqlalchemy import func, select

from app import __version__
from app.context import ServiceContext
from app.db import repository as repo
from app.db.models import Fraction, utcnow
from app.db.models_dicom import DicomRegExport
from app.db.models_security import DicomRegWithdrawal
from app.db.models_signoff import Signoff
from app.dicom import DicomError
from app.dicom.reg_build import PatientStudy

log = logging.getLogger(__name__)
ACTOR = "system:dicom-export"
MAX_ATTEMPTS = 5
RETRY_AFTER = timedelta(minutes=1)

KEY_OBJECT_SELECTION = UID("1.2.840.10008.5.1.4.1.1.88.59")
REJECTED_FOR_SAFETY = ("113037", "DCM", "Rejected for Patient Safety Reasons")
KEY_OBJECT_DESCRIPTION = ("113012", "DCM", "Key Object Description")


def rejection_note(
    reg_sop_instance_uid: str,
    reg_series_uid: str,
    study_uid: str,
    patient_study: PatientStudy,
    description: str,
    now: datetime | None = None,
) -> FileDataset:
    """The KOS that rejects one REG instance (see the module docstring)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    sop_uid = generate_uid(entropy_srcs=["mvct-guide REG rejection note", reg_sop_instance_uid])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = KEY_OBJECT_SELECTION
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = KEY_OBJECT_SELECTION
    ds.SOPInstanceUID = sop_uid
    ps = patient_study
    ds.PatientName, ds.PatientID = ps.patient_name, ps.patient_id
    ds.PatientBirthDate, ds.PatientSex = ps.patient_birth_date, ps.patient_sex
    ds.StudyInstanceUID = study_uid
    ds.StudyDate, ds.StudyTime = ps.study_date, ps.study_time
    ds.ReferringPhysicianName, ds.StudyID = ps.referring_physician_name, ps.study_id
    ds.AccessionNumber = ps.accession_number
    ds.Modality = "KO"
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["mvct-guide rejection notes", study_uid])
    ds.SeriesNumber = 902
    ds.ReferencedPerformedProcedureStepSequence = DicomSequence([])
    ds.Manufacturer = "mvct-guide"
    ds.SoftwareVersions = f"mvct-guide {__version__}"
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.TimezoneOffsetFromUTC = "+0000"
    reference = _sop_ref(SpatialRegistrationStorage, reg_sop_instance_uid)
    series = Dataset()
    series.SeriesInstanceUID = reg_series_uid
    series.ReferencedSOPSequence = DicomSequence([reference])
    study = Dataset()
    study.StudyInstanceUID = study_uid
    study.ReferencedSeriesSequence = DicomSequence([series])
    ds.CurrentRequestedProcedureEvidenceSequence = DicomSequence([study])
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = DicomSequence([_code(*REJECTED_FOR_SAFETY)])
    ds.ContinuityOfContent = "SEPARATE"
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "2010"
    ds.ContentTemplateSequence = DicomSequence([template])
    text = Dataset()
    text.RelationshipType = "CONTAINS"
    text.ValueType = "TEXT"
    text.ConceptNameCodeSequence = DicomSequence([_code(*KEY_OBJECT_DESCRIPTION)])
    text.TextValue = description[:1024]
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "COMPOSITE"
    item.ReferencedSOPSequence = DicomSequence(
        [_sop_ref(SpatialRegistrationStorage, reg_sop_instance_uid)]
    )
    ds.ContentSequence = DicomSequence([text, item])
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, scheme, meaning
    return code


def _sop_ref(sop_class: str, sop_instance: str) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = sop_class
    ref.ReferencedSOPInstanceUID = sop_instance
    return ref


def withdraw_due(ctx: ServiceContext, destination: str, send: Callable[[Dataset], None]) -> int:
    """Send the rejection note of every REG sent to ``destination`` whose signature has been
    superseded (failed notes are tried again like REGs); how many notes were sent."""
    sent = 0
    for export_id, latest_id in _due(ctx, destination):
        error: str | None = None
        uid = ""
        fraction_id = 0
        try:
            note, fraction_id, description = _note_for(ctx, export_id, latest_id)
            uid = str(note.SOPInstanceUID)
            send(note)
        except (DicomError, OSError) as exc:
            error = str(exc)
        _record(ctx, export_id, latest_id, fraction_id, destination, uid, error)
        if error:
            log.warning("rejection note for REG export %d not sent: %s", export_id, error)
        else:
            log.info(
                "REG of fraction %d withdrawn at %s (%s)", fraction_id, destination, description
            )
            sent += 1
    return sent


def _due(ctx: ServiceContext, destination: str) -> list[tuple[int, int]]:
    now = utcnow()
    latest = (
        select(Signoff.fraction_id, func.max(Signoff.id).label("latest_id"))
        .group_by(Signoff.fraction_id)
        .subquery()
    )
    query = (
        select(DicomRegExport.id, latest.c.latest_id)
        .join(latest, latest.c.fraction_id == DicomRegExport.fraction_id)
        .outerjoin(DicomRegWithdrawal, DicomRegWithdrawal.reg_export_id == DicomRegExport.id)
        .where(
            DicomRegExport.destination == destination,
            DicomRegExport.status == "sent",
            DicomRegExport.signoff_id < latest.c.latest_id,
        )
        .where(
            DicomRegWithdrawal.id.is_(None)
            | (
                (DicomRegWithdrawal.status == "failed")
                & (DicomRegWithdrawal.attempts < MAX_ATTEMPTS)
                & (DicomRegWithdrawal.updated_at <= now - RETRY_AFTER)
            )
        )
        .order_by(DicomRegExport.id)
    )
    with ctx.sessions() as session:
        return [(int(e), int(s)) for e, s in session.execute(query).all()]


def _note_for(ctx: ServiceContext, export_id: int, latest_id: int) -> tuple[Dataset, int, str]:
    from app.dicom.reg_export import _patient_study, _series_ref

    with ctx.sessions() as session:
        export = session.get_one(DicomRegExport, export_id)
        latest = session.get_one(Signoff, latest_id)
        fraction = session.get_one(Fraction, export.fraction_id)
        mvct_row = fraction.mvct_series
        reg_uid = export.sop_instance_uid
        description = (
            f"REG of fraction {fraction.id} (signature {export.signoff_id}) withdrawn: "
            f"superseded by signature {latest.id}, {latest.decision.replace('_', ' ')} by "
            f"{latest.printed_name}; reason: {latest.reason or 'none given'}"
        )
    _, header = _series_ref(ctx, mvct_row)
    reg_series_uid = generate_uid(
        entropy_srcs=["mvct-guide REG series", mvct_row.series_instance_uid]
    )  # as app.dicom.reg_build.build_reg names it
    note = rejection_note(
        reg_uid, reg_series_uid, mvct_row.study_instance_uid, _patient_study(header), description
    )
    return note, fraction.id, description


def _record(
    ctx: ServiceContext,
    export_id: int,
    latest_id: int,
    fraction_id: int,
    destination: str,
    uid: str,
    error: str | None,
) -> None:
    with ctx.writer() as session:
        row = session.scalar(
            select(DicomRegWithdrawal).where(DicomRegWithdrawal.reg_export_id == export_id)
        )
        if row is None:
            row = DicomRegWithdrawal(reg_export_id=export_id, attempts=0)
            session.add(row)
        row.superseded_by_signoff_id = latest_id
        record_attempt(row, uid, error)
        session.flush()
        repo.record_audit(
            session,
            actor=ACTOR,
            action="reg_withdraw_failed" if error else "reg_withdrawn",
            entity="fraction",
            entity_id=fraction_id or export_id,
            detail={
                "destination": destination,
                "reg_export_id": export_id,
                "superseded_by_signoff_id": latest_id,
                "rejection_note_uid": uid,
                "attempt": row.attempts,
                "error": error,
            },
        )
        session.commit()


def record_attempt(row: DicomRegExport | DicomRegWithdrawal, uid: str, error: str | None) -> None:
    """One more try at sending ``row``'s REG object (``uid``): sent, or failed with ``error``."""
    row.sop_instance_uid = uid
    row.status = "failed" if error else "sent"
    row.attempts += 1
    row.error = error
    row.updated_at = utcnow()

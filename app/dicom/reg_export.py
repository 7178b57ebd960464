"""The REG of a fraction: what its current sign-off says, with the images it registers.

* no sign-off yet: the engine's ``planning_to_daily_lps`` (Content Label ``UNSIGNED``);
* approved: the same matrix, signed (``APPROVED``, the signer as Content Creator);
* approved with an adjusted correction: the matrix of the physician's correction
  (:func:`registration.couch.correction_as_planning_to_daily` at the result's isocentre), coded
  DCM 125025 "Visual Alignment" (``ADJUSTED``);
* rejected, not registered yet, or failed: no REG (:class:`~app.dicom.RegExportError`).

The current sign-off is :func:`app.db.signoff_repo.latest_signoffs` (the highest id). The REG's
UIDs derive from the images, the result and the sign-off: the same state gives the same object.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime

from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset
from sqlalchemy.orm import Session

from app import __version__
from app.context import ServiceContext
from app.db import repository as repo
from app.db.models import Fraction, ImageSeries, JobStatus
from app.db.models_signoff import Decision
from app.db.signoff_repo import latest_signoffs, signed_correction
from app.dicom import RegExportError
from app.dicom.reg_build import PatientStudy, RegContent, SeriesRef, build_reg
from app.errors import NotFoundError
from registration.couch import CouchCorrection, correction_as_planning_to_daily
from registration.result import RegistrationResult as EngineResult

_HEADER_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "BodyPartExamined",
]


@dataclass(frozen=True)
class RegFile:
    fraction_id: int
    sop_instance_uid: str
    signoff_id: int | None
    data: bytes  #: the DICOM file (PS3.10), Explicit VR Little Endian


@dataclass(frozen=True)
class _Signature:
    signoff_id: int
    decision: Decision
    printed_name: str
    signed_at: datetime
    correction: CouchCorrection | None  #: the adjusted correction (approved_adjusted only)


def reg_for_fraction(ctx: ServiceContext, fraction_id: int) -> RegFile:
    """The REG of ``fraction_id`` now (see module docstring for what it carries)."""
    with ctx.sessions() as session:
        fraction = repo.fraction_by_id(session, fraction_id)
        if fraction is None:
            raise NotFoundError(f"fraction {fraction_id} does not exist")
        result = _result(fraction)
        signature = current_signature(session, fraction_id)
        planning_row = fraction.course.planning_series
        mvct_row = fraction.mvct_series
        result_created = fraction.result.created_at if fraction.result else datetime.now(UTC)
        result_id = fraction.result.id if fraction.result else 0
    if signature is not None and signature.decision is Decision.REJECTED:
        raise RegExportError(
            f"the registration of fraction {fraction_id} was rejected at sign-off by "
            f"{signature.printed_name}; there is no registration to export"
        )
    matrix = result.planning_to_daily_lps
    adjusted = signature is not None and signature.correction is not None
    if signature is not None and signature.correction is not None:
        matrix = correction_as_planning_to_daily(
            signature.correction, result.isocenter_lps_mm, result.patient_position
        )
    planning, _ = _series_ref(ctx, planning_row)
    mvct, mvct_header = _series_ref(ctx, mvct_row)
    content = RegContent(
        planning=planning,
        mvct=mvct,
        planning_to_daily=matrix,
        patient_study=_patient_study(mvct_header),
        created_at=signature.signed_at if signature else result_created,
        label=_label(signature),
        description=_description(fraction_id, signature, result),
        adjusted=adjusted,
        creator=signature.printed_name if signature else "",
        comment=_comment(signature, result),
        uid_seed=(
            mvct.series_instance_uid,
            planning.series_instance_uid,
            f"result {result_id} {result_created.isoformat()}",
            "unsigned" if signature is None else f"signoff {signature.signoff_id}",
        ),
        software_version=f"mvct-guide {__version__}",
    )
    reg = build_reg(content)
    reg.TimezoneOffsetFromUTC = "+0000"
    buffer = io.BytesIO()
    dcmwrite(buffer, reg, enforce_file_format=True)
    return RegFile(
        fraction_id=fraction_id,
        sop_instance_uid=str(reg.SOPInstanceUID),
        signoff_id=None if signature is None else signature.signoff_id,
        data=buffer.getvalue(),
    )


def current_signature(session: Session, fraction_id: int) -> _Signature | None:
    """The fraction's current sign-off (app.db.signoff_repo), reduced to what the REG needs."""
    signoff = latest_signoffs(session, [fraction_id]).get(fraction_id)
    if signoff is None:
        return None
    decision = Decision(signoff.decision)
    adjusted = decision is Decision.APPROVED_ADJUSTED
    return _Signature(
        signoff_id=signoff.id,
        decision=decision,
        printed_name=signoff.printed_name,
        signed_at=signoff.signed_at,
        correction=signed_correction(signoff) if adjusted else None,
    )


def _result(fraction: Fraction) -> EngineResult:
    status = fraction.job.status
    if fraction.result is None or status != JobStatus.DONE.value:
        detail = f": {fraction.job.error}" if fraction.job.error else ""
        raise RegExportError(
            f"fraction {fraction.id} has no registration yet (status {status}{detail}); "
            "a REG exists once it is done"
        )
    return fraction.result.engine_result


def _series_ref(ctx: ServiceContext, row: ImageSeries) -> tuple[SeriesRef, Dataset]:
    files = ctx.store.series_files(row.content_sha256)
    if not files:
        raise RegExportError(
            f"the stored images of series {row.series_instance_uid} are missing from the data "
            "directory; ask the physicist to check the server"
        )
    headers = [dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS) for path in files]
    headers.sort(key=lambda h: str(h.SOPInstanceUID))
    images = tuple((str(h.SOPClassUID), str(h.SOPInstanceUID)) for h in headers)
    ref = SeriesRef(
        study_instance_uid=row.study_instance_uid,
        series_instance_uid=row.series_instance_uid,
        frame_of_reference_uid=row.frame_of_reference_uid,
        images=images,
    )
    return ref, headers[0]


def _patient_study(header: Dataset) -> PatientStudy:
    def text(keyword: str) -> str:
        value = header.get(keyword, "")
        return "" if value is None else str(value)

    return PatientStudy(
        patient_name=text("PatientName"),
        patient_id=text("PatientID"),
        patient_birth_date=text("PatientBirthDate"),
        patient_sex=text("PatientSex"),
        study_date=text("StudyDate"),
        study_time=text("StudyTime"),
        referring_physician_name=text("ReferringPhysicianName"),
        study_id=text("StudyID"),
        accession_number=text("AccessionNumber"),
        body_part_examined=text("BodyPartExamined")[:16],
    )


def _label(signature: _Signature | None) -> str:
    if signature is None:
        return "UNSIGNED"
    return "ADJUSTED" if signature.correction is not None else "APPROVED"


def _description(fraction_id: int, signature: _Signature | None, result: EngineResult) -> str:
    if signature is None:
        trusted = "trusted" if result.trusted else "NOT trusted"
        return f"Fraction {fraction_id}, not signed off ({trusted})"
    return f"Fraction {fraction_id}, {signature.decision.value}"


def _comment(signature: _Signature | None, result: EngineResult) -> str:
    """Frame of Reference Transformation Comment (LO: at most 64 characters)."""
    if signature is not None and signature.correction is not None:
        return f"adjusted correction signed by {signature.printed_name}"[:64]
    return "MVCT to planning CT (inverse of planning_to_daily_lps)"

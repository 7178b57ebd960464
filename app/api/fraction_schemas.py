"""Fraction schemas (public views) and the presenter that builds them from rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.db.models import Fraction
from app.schemas.common import CouchCorrectionOut
from app.schemas.signoff import SignoffPublic
from app.services.anatomy import ALERT_WARNING, AnatomyEntry
from app.services.machines import machine_correction, signed_machine_correction
from app.services.qa_verdict import QaDay
from registration.couch import CouchCorrection
from registration.machine_correction import MachineCorrection

FractionStatus = Literal["queued", "running", "done", "failed"]


class QualityOut(BaseModel):
    final_metric: float
    overlap_fraction: float
    iterations: int
    seconds: float
    second_estimate_disagreement_mm: float | None = None
    converged: bool


class SignOffOut(BaseModel):
    """Deprecated summary of the current signature; read ``signoff`` instead."""

    signed_by: str
    signed_at: datetime
    meaning: str


class MachineCorrectionOut(BaseModel):
    """The correction for the fraction's treatment machine (IEC table axes, mm and degrees).

    ``measured``: the full 6-DOF correction; ``proposed``: what the machine should apply (its
    axes only; a TomoTherapy roll about the bore axis with the translation that keeps the
    isocentre in place); ``to_apply``: ``proposed``, or zeros within the no-move tolerance;
    ``residual``: the 6-DOF correction still needed after ``to_apply``. ``beyond_limit``: axes
    past the machine's limit, shown and never clipped.
    """

    profile_name: str
    measured: CouchCorrectionOut
    proposed: CouchCorrectionOut
    to_apply: CouchCorrectionOut
    residual: CouchCorrectionOut
    moves: bool
    beyond_limit: list[str]
    flags: list[str]
    isocenter_offset_from_axis_mm: list[float] | None = None
    rotation_axis_lps_mm: list[float] | None = Field(
        default=None, description="the course's bore-axis point used (None: unknown)"
    )
    messages: list[str]


class VerificationOut(BaseModel):
    """The verification scan taken after the couch move: its registration is the residual."""

    fraction_id: int
    status: FractionStatus
    residual_6dof: CouchCorrectionOut | None = Field(
        default=None, description="the 6-DOF correction still needed after the move"
    )
    trusted: bool | None = None


class ResidualOut(BaseModel):
    """What is left at one structure's surface after the couch applies a correction (mm)."""

    structure: str
    type: str
    max_mm: float
    p95_mm: float


class FractionPublic(BaseModel):
    """A fraction, with the engine's result once ``status`` is ``done``."""

    id: int
    status: FractionStatus
    patient_id: str
    course_id: int
    fraction_number: int
    #: 1; 2, 3 … for a repeat or verification image of the same fraction number
    image_number: int = 1
    created_at: datetime
    mvct_series_instance_uid: str
    patient_position: str
    dof: int
    mode: str
    margin_mm: float = Field(description="the course's PTV margin")
    exceeds_margin: bool | None = Field(
        default=None,
        description="a couch translation exceeds the PTV margin (None until registered)",
    )
    couch_correction: CouchCorrectionOut | None = None
    couch_correction_6dof: CouchCorrectionOut | None = None
    planning_to_daily_lps: list[list[float]] | None = Field(
        default=None, description="4×4 M: the anatomy at planning point p (LPS mm) is at M·p today"
    )
    isocenter_lps_mm: list[float] | None = None
    isocenter_source: str | None = Field(
        default=None,
        description="where the isocentre came from: rtplan, request, course or mvct_centre "
        "(then the result is never trusted)",
    )
    residuals: list[ResidualOut] | None = Field(
        default=None,
        description="per structure, what is left after the couch applies couch_correction",
    )
    signed_residuals: list[ResidualOut] | None = Field(
        default=None, description="the same for the signed correction (None until signed)"
    )
    quality: QualityOut | None = None
    trusted: bool | None = None
    warnings: list[str] = Field(default_factory=list)
    engine_version: str | None = None
    error: str | None = Field(
        default=None, description="why the registration failed (status failed)"
    )
    attempts: int
    review_url: str
    signoff: SignoffPublic | None = Field(
        default=None,
        description="the current physician signature (latest; None until signed)",
    )
    sign_off: SignOffOut | None = Field(default=None, description="deprecated: use signoff")
    station_name: str = Field(default="", description="the MVCT's StationName")
    machine_correction: MachineCorrectionOut | None = Field(
        default=None, description="the correction for the fraction's machine profile"
    )
    machine_correction_signed: MachineCorrectionOut | None = Field(
        default=None,
        description="the machine's correction for the signed correction: its to_apply is what "
        "the couch applies after sign-off (None until approved, or without a profile)",
    )
    verifies_fraction_id: int | None = Field(
        default=None, description="set on a verification scan: the fraction it checks"
    )
    verification: VerificationOut | None = Field(
        default=None, description="the latest verification scan of this fraction"
    )
    anatomy: dict[str, Any] | None = Field(
        default=None,
        description="how the anatomy changed since planning, measured after the rigid match: "
        "{figures (mm, %; negative = inward/smaller: weight loss), alert {alert, reasons, "
        "messages}, warning ('anatomy changed: consider re-planning' or null), acknowledged}; "
        "null until measured. The alert never changes 'trusted'.",
    )
    anatomy_note: str | None = Field(
        default=None, description="why the anatomy could not be measured on this fraction"
    )
    qa: dict[str, Any] | None = Field(
        default=None,
        description="a QA phantom scan's verdict: the correction found against the one expected "
        "from qa_expected_offset (the couch offset APPLIED to the phantom, IEC mm/deg), per "
        "axis, and the image figures against the baseline; null for a patient fraction",
    )


class ShiftLogEntry(BaseModel):
    id: int  #: the fraction's id, as every other resource answers it
    fraction_id: int = Field(description="the same as id; kept for clients written before id")
    course_id: int
    fraction_number: int
    created_at: datetime
    status: FractionStatus
    couch_correction: CouchCorrectionOut | None = None
    trusted: bool | None = None
    margin_mm: float
    exceeds_margin: bool | None = None
    review_url: str


class ShiftLog(BaseModel):
    """Every fraction of a patient, oldest first: the couch corrections over the course."""

    patient_id: str
    fractions: list[ShiftLogEntry]


def review_url(base_url: str, fraction_id: int) -> str:
    return f"{base_url.rstrip('/')}/review/{fraction_id}"


def fraction_public(
    fraction: Fraction,
    base_url: str,
    signoff: SignoffPublic | None = None,
    signed_residuals: list[dict[str, Any]] | None = None,
    *,
    anatomy: AnatomyEntry | None = None,
    anatomy_note: str | None = None,
    qa: QaDay | None = None,
    verification: Fraction | None = None,
) -> FractionPublic:
    job = fraction.job
    margin = fraction.course.ptv_margin_mm
    iso = (fraction.isocenter_x_mm, fraction.isocenter_y_mm, fraction.isocenter_z_mm)
    view = FractionPublic(
        id=fraction.id,
        status=job.status,  # type: ignore[arg-type]
        patient_id=fraction.patient_id,
        course_id=fraction.course_id,
        fraction_number=fraction.fraction_number,
        image_number=fraction.image_number,
        created_at=fraction.created_at,
        mvct_series_instance_uid=fraction.mvct_series.series_instance_uid,
        patient_position=fraction.mvct_series.patient_position,
        dof=fraction.dof,
        mode=fraction.mode,
        margin_mm=margin,
        isocenter_lps_mm=None if None in iso else list(iso),  # type: ignore[arg-type]
        isocenter_source=fraction.isocenter_source,
        warnings=list(fraction.planning_warnings or ()),
        signed_residuals=None
        if signed_residuals is None
        else [ResidualOut(**r) for r in signed_residuals],
        error=job.error,
        attempts=job.attempts,
        review_url=review_url(base_url, fraction.id),
        signoff=signoff,
        sign_off=None
        if signoff is None
        else SignOffOut(
            signed_by=signoff.printed_name, signed_at=signoff.signed_at, meaning=signoff.meaning
        ),
        station_name=fraction.station_name,
        verifies_fraction_id=fraction.verifies_fraction_id,
        verification=None if verification is None else verification_out(verification),
        anatomy=None if anatomy is None else anatomy.to_dict(),
        anatomy_note=anatomy_note,
        qa=None if qa is None else qa.to_dict(),
    )
    if fraction.result is None:
        return view
    result = fraction.result.engine_result
    stored = result.to_dict()  # the values as stored (rounded once, by the engine's JSON form)
    return view.model_copy(
        update={
            "exceeds_margin": result.couch_correction.exceeds_margin(margin),
            "couch_correction": CouchCorrectionOut.of(result.couch_correction),
            "couch_correction_6dof": CouchCorrectionOut.of(result.couch_correction_6dof),
            "planning_to_daily_lps": stored["planning_to_daily_lps"],
            "isocenter_lps_mm": stored["isocenter_lps_mm"],
            "quality": QualityOut(**stored["quality"]),
            "trusted": result.trusted,
            "residuals": [ResidualOut(**r) for r in fraction.result.residuals or ()],
            "warnings": list(result.warnings)
            + ([ALERT_WARNING] if anatomy is not None and anatomy.alert.alert else []),
            "engine_version": result.engine_version,
            "machine_correction": machine_correction_out(fraction),
            "machine_correction_signed": _signed_out(fraction, signoff),
        }
    )


def _signed_out(fraction: Fraction, signoff: SignoffPublic | None) -> MachineCorrectionOut | None:
    if signoff is None or signoff.couch_correction is None:
        return None
    signed = CouchCorrection(**signoff.couch_correction.model_dump())
    correction = signed_machine_correction(fraction, signed)
    return None if correction is None else machine_correction_out(fraction, correction)


def machine_correction_out(
    fraction: Fraction, correction: MachineCorrection | None = None
) -> MachineCorrectionOut | None:
    """``correction`` (default: the registration's machine correction) as the API shows it."""
    correction = correction or machine_correction(fraction)
    if correction is None:
        return None
    data = correction.to_dict()
    axis = fraction.course.rotation_axis_point
    return MachineCorrectionOut(
        profile_name=correction.profile_name,
        measured=CouchCorrectionOut(**data["measured"]),
        proposed=CouchCorrectionOut(**data["proposed"]),
        to_apply=CouchCorrectionOut(**data["to_apply"]),
        residual=CouchCorrectionOut(**data["residual"]),
        moves=data["moves"],
        beyond_limit=data["beyond_limit"],
        flags=data["flags"],
        isocenter_offset_from_axis_mm=data["isocenter_offset_from_axis_mm"],
        rotation_axis_lps_mm=None if axis is None else axis.as_array().tolist(),
        messages=data["messages"],
    )


def verification_out(verification: Fraction) -> VerificationOut:
    result = verification.result
    engine = None if result is None else result.engine_result
    return VerificationOut(
        fraction_id=verification.id,
        status=verification.job.status,  # type: ignore[arg-type]
        residual_6dof=None
        if engine is None
        else CouchCorrectionOut.of(engine.couch_correction_6dof.rounded()),
        trusted=None if engine is None else engine.trusted,
    )


def shift_log_entry(fraction: Fraction, base_url: str) -> ShiftLogEntry:
    margin = fraction.course.ptv_margin_mm
    result = fraction.result
    couch = None if result is None else CouchCorrectionOut.of(result.couch_correction)
    return ShiftLogEntry(
        id=fraction.id,
        fraction_id=fraction.id,
        course_id=fraction.course_id,
        fraction_number=fraction.fraction_number,
        created_at=fraction.created_at,
        status=fraction.job.status,  # type: ignore[arg-type]
        couch_correction=couch,
        trusted=None if result is None else result.trusted,
        margin_mm=margin,
        exceeds_margin=None if result is None else result.couch_correction.exceeds_margin(margin),
        review_url=review_url(base_url, fraction.id),
    )

"""What the review page shows of one fraction: the facts, the correction, the signatures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.db import record_chain, signoff_repo
from app.db import repository as repo
from app.db.models import Fraction
from app.db.models_signoff import Decision, Signoff
from app.services.machines import fraction_profile, machine_correction, profile_for_dof
from app.services.residuals import residuals_of_correction
from app.services.signoff import LARGE_SHIFT_MM
from app.storage import ImageStore
from app.web.anatomy_view import anatomy_view
from app.web.plot import Point, translations_svg
from app.web.worklist import machine_of
from registration.couch import CouchCorrection, Dof, correction_as_planning_to_daily
from registration.frames import PatientPosition, lps_to_iec_matrix
from registration.result import RegistrationResult as EngineResult

AXES = CouchCorrection.AXES
AXIS_LABELS = {
    "lateral_mm": ("lateral (X)", "mm"),
    "longitudinal_mm": ("longitudinal (Y)", "mm"),
    "vertical_mm": ("vertical (Z)", "mm"),
    "pitch_deg": ("pitch", "°"),
    "roll_deg": ("roll", "°"),
    "yaw_deg": ("yaw", "°"),
}


@dataclass(frozen=True)
class SignatureView:
    signoff: Signoff
    signer_username: str
    signed_at_utc: str
    correction: dict[str, float] | None
    verified: bool


def review_context(db: Session, store: ImageStore, fraction: Fraction) -> dict[str, Any]:
    result = fraction.result.engine_result if fraction.result is not None else None
    signatures = [
        _signature(db, s, fraction) for s in signoff_repo.signoffs_of_fraction(db, fraction.id)
    ]
    current = signatures[-1] if signatures else None
    position = fraction.mvct_series.patient_position
    machine = machine_correction(fraction)
    signed_residuals = _signed_residuals(db, store, fraction, current)
    return {
        "fraction": fraction,
        "machine": machine_of(store, fraction.mvct_series.content_sha256),
        "result": None if result is None else result.to_dict(),
        "axes": [(axis, *AXIS_LABELS[axis]) for axis in AXES],
        "beyond_margin": result is not None
        and result.couch_correction.exceeds_margin(fraction.course.ptv_margin_mm),
        "large_shift_mm": LARGE_SHIFT_MM,
        "signatures": list(reversed(signatures)),
        "current": current,
        "trend_svg": _trend(db, fraction),
        "rotation_nudges": rotation_nudges(fraction),
        "machine_correction": None if machine is None else machine.to_dict(),
        "residuals": _residuals(db, store, fraction, result),
        "signed_residuals": signed_residuals,
        "signed_residuals_by_name": {r["structure"]: r for r in signed_residuals or ()},
        "isocenter_source": fraction.isocenter_source,
        "anatomy": anatomy_view(db, fraction),
        "config": _viewer_config(fraction, result, current, position),
    }


def rotation_nudges(fraction: Fraction) -> list[tuple[str, str]]:
    """The rotation axes the fraction's machine applies (its profile's, else its dof's), in
    0.1° nudge rows: ``(axis field, label)``."""
    profile = fraction_profile(fraction) or profile_for_dof(Dof(fraction.dof))
    return [(f"{axis.value}_deg", axis.value) for axis in profile.applied_axes if axis.is_rotation]


def _signature(db: Session, signoff: Signoff, fraction: Fraction) -> SignatureView:
    signer = signoff_repo.signer_of(db, signoff)
    correction = signoff_repo.signed_correction(signoff)
    record = signoff_repo.signed_record(signoff, fraction, signer)
    return SignatureView(
        signoff=signoff,
        signer_username=signer.username,
        signed_at_utc=signoff.signed_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        correction=None if correction is None else correction.as_dict(),
        verified=signoff_repo.record_sha256(record) == signoff.record_sha256
        and record_chain.link_is_intact(db, "signoffs", signoff.id),
    )


def _viewer_config(
    fraction: Fraction,
    result: EngineResult | None,
    current: SignatureView | None,
    position: PatientPosition,
) -> dict[str, Any]:
    """What ``review.js`` needs besides the volumes (see app/web/volumes.py for the maths)."""
    base_to_daily = None
    offset = [0.0] * 6
    machine = None if result is None else result.couch_correction.as_dict()
    if result is not None and machine is not None:
        iso = result.isocenter_lps_mm
        base = result.couch_correction
        base_to_daily = [
            list(row) for row in correction_as_planning_to_daily(base, iso, position).matrix
        ]
        signed = current.correction if current is not None else None
        if signed is not None:
            offset = [round(signed[a] - machine[a], 2) for a in AXES]
    return {
        "fractionId": fraction.id,
        "volumesUrl": f"/review/{fraction.id}/volumes",
        "signUrl": f"/review/{fraction.id}/sign",
        "lpsToIec": lps_to_iec_matrix(position).tolist(),
        "patientPosition": position.value,
        "base": machine,
        "baseToDaily": base_to_daily,
        "initialOffset": offset,
        "isocenter": None if result is None else result.isocenter_lps_mm.as_array().tolist(),
        "dof": fraction.dof,
        "marginMm": fraction.course.ptv_margin_mm,
        "largeShiftMm": LARGE_SHIFT_MM,
        "structuresUrl": f"/review/{fraction.id}/structures",
        "planningToDaily": None
        if result is None
        else [list(row) for row in result.planning_to_daily_lps.matrix],
    }


def _residuals(
    db: Session, store: ImageStore, fraction: Fraction, result: EngineResult | None
) -> list[dict[str, Any]]:
    """Those the worker stored with the result; computed here for a result stored without
    them (before the planning package existed)."""
    if fraction.result is None or result is None:
        return []
    if fraction.result.residuals:
        return list(fraction.result.residuals)
    assessment = residuals_of_correction(store, db, fraction, result.couch_correction)
    return [] if assessment is None else assessment.residuals


def _signed_residuals(
    db: Session, store: ImageStore, fraction: Fraction, current: SignatureView | None
) -> list[dict[str, Any]] | None:
    if current is None or current.correction is None:
        return None
    assessment = residuals_of_correction(store, db, fraction, CouchCorrection(**current.correction))
    return None if assessment is None else assessment.residuals


def _trend(db: Session, fraction: Fraction) -> str:
    course = [
        f
        for f in repo.fractions_of_patient(db, fraction.patient_id)
        if f.course_id == fraction.course_id
    ]
    signed = signoff_repo.latest_signoffs(db, [f.id for f in course])
    points = []
    for other in course:
        if other.fraction_number > fraction.fraction_number or other.result is None:
            continue
        correction = other.result.couch_correction.as_dict()
        latest = signed.get(other.id)
        rejected = latest is not None and latest.decision == Decision.REJECTED.value
        if latest is not None and (chosen := signoff_repo.signed_correction(latest)) is not None:
            correction = chosen.as_dict()
        points.append(Point(other.fraction_number, correction, rejected, other.id == fraction.id))
    return translations_svg(points, fraction.course.ptv_margin_mm)

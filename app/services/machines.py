"""Machine profiles in the service: stored, audited, matched to a fraction, applied to its result.

Which profile a fraction uses is decided once, when it is received, and kept with it (a copy of
the profile in ``fractions.machine_profile``), so a later change of a profile does not rewrite
the corrections of fractions already treated:

1. the course's profile (``courses.machine_profile_name``), when a physicist set one;
2. else the first stored profile whose machine names include the MVCT's StationName
   (:func:`registration.machine.profile_for_machine`);
3. else none: the fraction is corrected with its ``dof`` only, as before profiles existed.

The fraction's ``dof`` is the request's ``dof`` when it gives one (an explicit override), else
the profile's, else the course's.

The bore axis of a TomoTherapy roll is a per-course fact, the course's ``rotation_axis`` point
(planning LPS mm; for TomoTherapy the machine isocentre of the plan — where the green lasers'
virtual isocentre lies on the planning CT, which fixes the bore axis laterally and vertically).
It is read when the correction is shown, so setting it on a course resolves the fractions that
were flagged ``rotation_axis_unknown`` before. It is never guessed: unknown, the roll is taken
about the plan isocentre and the correction carries the flag and its message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.context import ServiceContext
from app.db import repository as repo
from app.db.models import Course, Fraction, utcnow
from app.db.models_machine import MachineProfileRow
from app.errors import NotFoundError, UnprocessableError
from registration.adjustment import adjusted_planning_to_daily
from registration.couch import CouchCorrection, Dof
from registration.machine import (
    Actuator,
    AxisCapability,
    MachineProfile,
    MachineProfileError,
    profile_for_machine,
)
from registration.machine_correction import MachineCorrection, correction_for_machine

STATION_NAME_LENGTH = 64


def all_profiles(session: Session) -> list[MachineProfileRow]:
    return list(session.scalars(select(MachineProfileRow).order_by(MachineProfileRow.name)))


def profile_row(session: Session, name: str) -> MachineProfileRow | None:
    return session.scalar(select(MachineProfileRow).where(MachineProfileRow.name == name))


def get_profile(session: Session, name: str) -> MachineProfile:
    row = profile_row(session, name)
    if row is None:
        known = ", ".join(repr(r.name) for r in all_profiles(session)) or "none"
        raise NotFoundError(f"there is no machine profile {name!r}; known: {known}")
    return row.machine_profile


def read_profile(data: Any) -> MachineProfile:
    """The core's profile from its JSON form; 422 with the core's words when it is not one."""
    if not isinstance(data, dict):
        raise UnprocessableError(
            "a machine profile is a JSON object in the form of GET /api/v1/machine-profiles"
        )
    try:
        return MachineProfile.from_dict(data)
    except MachineProfileError as exc:
        raise UnprocessableError(str(exc)) from None


def set_profile(ctx: ServiceContext, profile: MachineProfile, actor: str) -> bool:
    """Store ``profile`` under its name (new or replacing); audited with before and after.

    Returns True when the profile is new. Fractions already received keep the copy they took.
    """
    with ctx.writer() as session:
        row = profile_row(session, profile.name)
        before = None if row is None else row.profile
        after = profile.to_dict()
        if row is None:
            session.add(MachineProfileRow(name=profile.name, profile=after, updated_by=actor))
        elif row.profile != after:
            row.profile = after
            row.updated_by = actor
            row.updated_at = utcnow()
        if before != after:
            repo.record_audit(
                session,
                actor=actor,
                action="machine_profile_set",
                entity="machine_profile",
                entity_id=profile.name[:64],
                detail={"before": before, "after": after},
            )
        session.commit()
        return row is None


def station_name_of(path: Path) -> str:
    """The StationName (0008,1010) of one DICOM file; "" when it has none or cannot be read."""
    try:
        dataset = dcmread(path, stop_before_pixels=True, specific_tags=["StationName"])
    except (InvalidDicomError, OSError, ValueError):
        return ""
    name = str(dataset.get("StationName", "") or "").strip()
    return "".join(c for c in name if c.isprintable())[:STATION_NAME_LENGTH]


def profile_for_fraction(
    session: Session, course: Course, station_name: str
) -> MachineProfile | None:
    """The profile a new fraction of ``course`` uses (see the module docstring)."""
    if course.machine_profile_name:
        return get_profile(session, course.machine_profile_name)
    profiles = tuple(row.machine_profile for row in all_profiles(session))
    return profile_for_machine(profiles, station_name=station_name or None)


def profile_name_for_machine(
    session: Session, station_name: str | None = None, treatment_machine_name: str | None = None
) -> str | None:
    """The stored profile matching an MVCT's StationName, else a plan's TreatmentMachineName.

    For the plan's ingest: a course without a profile can take this one
    (``CourseChanges(machine_profile_name=…)``), so its fractions follow the planned machine.
    """
    profiles = tuple(row.machine_profile for row in all_profiles(session))
    found = profile_for_machine(profiles, station_name, treatment_machine_name)
    return None if found is None else found.name


def fraction_dof(requested: Dof | None, profile: MachineProfile | None, course: Course) -> Dof:
    if requested is not None:
        return requested
    return profile.dof if profile is not None else course.dof


def fraction_profile(fraction: Fraction) -> MachineProfile | None:
    """The copy of the profile the fraction was received with."""
    if fraction.machine_profile is None:
        return None
    return MachineProfile.from_dict(fraction.machine_profile)


def profile_for_dof(dof: Dof) -> MachineProfile:
    """What a couch correcting ``dof`` degrees of freedom applies when no profile is known:
    its axes by couch moves about the isocentre, no limits, no tolerance (the engine's refit)."""
    moved = AxisCapability(Actuator.COUCH_TRANSLATION)
    rotated = AxisCapability(Actuator.COUCH_ROTATION)
    fixed = AxisCapability(Actuator.NOT_APPLIED)
    return MachineProfile(
        name=f"{int(dof)}-DOF couch (no machine profile)",
        lateral=moved,
        longitudinal=moved,
        vertical=moved,
        pitch=rotated if dof is Dof.SIX else fixed,
        roll=rotated if dof in (Dof.SIX, Dof.TRANSLATIONS_ROLL) else fixed,
        yaw=rotated if dof is Dof.SIX else fixed,
        no_move_tolerance_mm=0.0,
        no_move_tolerance_deg=0.0,
    )


def machine_correction(
    fraction: Fraction, *, without_profile: bool = False
) -> MachineCorrection | None:
    """The correction the fraction's machine applies; None without a result, or without a
    profile unless ``without_profile`` (then :func:`profile_for_dof` of the fraction's dof)."""
    profile = fraction_profile(fraction)
    if profile is None and without_profile:
        profile = profile_for_dof(Dof(fraction.dof))
    if profile is None or fraction.result is None:
        return None
    result = fraction.result.engine_result
    return correction_for_machine(
        result.planning_to_daily_lps,
        result.isocenter_lps_mm,
        result.patient_position,
        profile,
        rotation_axis_point=fraction.course.rotation_axis_point,
    )


def signed_machine_correction(
    fraction: Fraction, signed: CouchCorrection
) -> MachineCorrection | None:
    """What the fraction's machine applies for the ``signed`` correction (None without a profile).

    The signed correction is about the isocentre, like the proposed one; the machine's move for
    it is the machine correction of the measured motion composed with the physician's adjustment
    (:func:`registration.adjustment.adjusted_planning_to_daily`), so a TomoTherapy roll about
    the bore axis carries its isocentre-keeping translation for the signed values too.
    """
    profile = fraction_profile(fraction)
    if profile is None or fraction.result is None:
        return None
    result = fraction.result.engine_result
    adjusted = adjusted_planning_to_daily(
        result.planning_to_daily_lps,
        result.couch_correction,
        signed,
        result.isocenter_lps_mm,
        result.patient_position,
    )
    return correction_for_machine(
        adjusted.planning_to_daily_lps,
        result.isocenter_lps_mm,
        result.patient_position,
        profile,
        rotation_axis_point=fraction.course.rotation_axis_point,
    )

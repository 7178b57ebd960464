"""The couch correction expressed for one treatment machine (a :class:`MachineProfile`).

Input: the registration ``M`` (``planning_to_daily``: planning point ``p`` is at ``M·p`` today,
LPS mm), the plan isocentre ``P`` (LPS mm), the patient position and the profile. Signs, axes and
angle order are those of :mod:`registration.couch` (the correction undoes the anatomy's motion,
translations evaluated at the isocentre, IEC 61217 table axes, ``Rz(yaw)·Rx(pitch)·Ry(roll)``).

Steps
-----
1. ``measured`` = the 6-DOF correction (:func:`registration.couch.couch_correction_6dof`): kept
   whatever the machine does.
2. The rotations the machine cannot apply are dropped by the refit of
   :func:`registration.couch.couch_correction_for_dof` (translation ``t = −d`` at the isocentre;
   roll the least-squares angle about table Y when only roll is applied).
3. **Rotation centre.** A couch rotation turns the couch top about the room isocentre, where the
   plan isocentre is after the translation: nothing more to do. TomoTherapy applies roll by
   rotating the delivery about the **bore axis** — the IEC Y axis through the machine isocentre
   (the gantry's axis of rotation; Laub et al., JACMP 2015;16(3):80) — not about the plan
   isocentre. With ``B`` a point on that axis and ``R_c = Ry(roll)`` (table axes), the patient
   seen from the beam moves as ``q ↦ R_c·(q + t_m − B) + B``; equal to the intended
   ``q ↦ R_c·(q − d − P) + P`` for every ``q`` when::

       t_m = −d − (I − R_cᵀ)·(P − B)          (table axes, mm)

   so the plan isocentre stays in place. ``P − B`` is the isocentre's offset from the bore axis in
   table axes (its longitudinal part has no effect). Example: isocentre 100 mm to the patient's
   left of the axis (HFS, IEC +X), roll +1°: ``R_cᵀ·(100, 0, 0) = (99.985, 0, 1.745)``, so
   ``t_m = −d + (−0.015, 0, +1.745) mm``: the roll about the axis alone would carry the
   isocentre 1.7 mm down, and the couch goes 1.7 mm higher to keep it in place. When ``B`` is
   not known the roll is taken about the isocentre and the correction says so
   (``CorrectionFlag.ROTATION_AXIS_UNKNOWN``): the translation is then wrong by the amount above.
4. **Limits.** Each applied axis whose value exceeds its limit (after rounding to 1e-6) is listed
   in ``beyond_limit``; the value is kept, never clipped.
5. **Tolerance.** When every applied axis is within the profile's no-move tolerance the machine
   makes no move: ``to_apply`` is all zeros and ``proposed`` keeps the small values.
6. ``residual`` is the 6-DOF correction still needed after ``to_apply`` (what the machine could
   not correct: rotations it does not apply, moves under tolerance), computed exactly by
   composing ``M`` with the machine's move; evaluated at the isocentre like every correction.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum, unique
from typing import Any, Final

import numpy as np

from registration.couch import (
    CouchCorrection,
    couch_correction_6dof,
    couch_correction_for_dof,
)
from registration.frames import PatientPosition, iec_rotation_matrix, lps_to_iec_matrix, rot_y
from registration.geometry import IecTableVector, LpsPoint, RigidTransformLps
from registration.machine import MachineAxis, MachineProfile

#: decimals of mm or degrees kept before comparing with a limit or a tolerance
_COMPARISON_DECIMALS: Final = 6
NO_MOVE: Final = CouchCorrection(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@unique
class CorrectionFlag(StrEnum):
    """Facts about a machine correction that the reviewer must see."""

    BEYOND_LIMIT = "beyond_limit"  #: some applied axis exceeds its limit (see ``beyond_limit``)
    WITHIN_TOLERANCE = "within_tolerance"  #: every applied axis within tolerance: no move
    NOT_APPLIED_ROTATIONS = "not_applied_rotations"  #: measured rotations the machine leaves
    ROTATION_AXIS_UNKNOWN = "rotation_axis_unknown"  #: bore axis not given; roll about the iso


@dataclass(frozen=True, slots=True)
class MachineCorrection:
    """The registration's correction for one machine; all corrections in IEC table axes.

    ``measured``: the full 6-DOF correction. ``proposed``: what this machine should apply
    (refitted, roll about its real axis), before the tolerance. ``to_apply``: ``proposed``, or
    all zeros when within tolerance. ``residual``: the 6-DOF correction still needed after
    ``to_apply``. ``isocenter_offset_from_axis``: ``P − B`` in table axes when the machine rolls
    about the bore axis and ``B`` was given.
    """

    profile_name: str
    planning_to_daily_lps: RigidTransformLps
    isocenter_lps_mm: LpsPoint
    patient_position: PatientPosition
    measured: CouchCorrection
    proposed: CouchCorrection
    to_apply: CouchCorrection
    residual: CouchCorrection
    beyond_limit: tuple[MachineAxis, ...]
    flags: tuple[CorrectionFlag, ...]
    isocenter_offset_from_axis: IecTableVector | None
    messages: tuple[str, ...]

    @property
    def moves(self) -> bool:
        return CorrectionFlag.WITHIN_TOLERANCE not in self.flags

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, rounded to 0.01 mm / 0.01° like :class:`RegistrationResult`."""
        offset = self.isocenter_offset_from_axis
        return {
            "profile_name": self.profile_name,
            "planning_to_daily_lps": [
                [round(v, 6) for v in row] for row in self.planning_to_daily_lps.matrix
            ],
            "measured": self.measured.rounded().as_dict(),
            "proposed": self.proposed.rounded().as_dict(),
            "to_apply": self.to_apply.rounded().as_dict(),
            "residual": self.residual.rounded().as_dict(),
            "moves": self.moves,
            "beyond_limit": [axis.value for axis in self.beyond_limit],
            "flags": [flag.value for flag in self.flags],
            "isocenter_offset_from_axis_mm": (
                None if offset is None else [round(v, 3) for v in offset.as_array().tolist()]
            ),
            "messages": list(self.messages),
        }


def correction_for_machine(
    planning_to_daily: RigidTransformLps,
    isocenter: LpsPoint,
    position: PatientPosition,
    profile: MachineProfile,
    *,
    rotation_axis_point: LpsPoint | None = None,
) -> MachineCorrection:
    """The correction ``profile``'s machine should apply (see the module docstring).

    ``rotation_axis_point``: a point of the bore axis (machine isocentre) in planning LPS mm,
    used only when the profile rolls by gantry start angle.
    """
    a = lps_to_iec_matrix(position)
    measured = couch_correction_6dof(planning_to_daily, isocenter, position)
    refit = couch_correction_for_dof(planning_to_daily, isocenter, position, profile.dof)
    flags: list[CorrectionFlag] = []
    messages: list[str] = []
    offset: IecTableVector | None = None
    translation = refit.translation.as_array()
    if profile.rolls_about_bore_axis:
        if rotation_axis_point is None:
            flags.append(CorrectionFlag.ROTATION_AXIS_UNKNOWN)
            messages.append(
                f"The bore axis position was not given: the roll of {refit.roll_deg:+.2f}° is "
                "taken about the plan isocentre; if the isocentre is off the axis the "
                "translations are wrong by about offset × roll (1.7 mm per 100 mm and degree)."
            )
        else:
            offset = IecTableVector.from_array(
                a @ (isocenter.as_array() - rotation_axis_point.as_array())
            )
            r_c = rot_y(refit.roll_deg)
            translation = translation - (np.eye(3) - r_c.T) @ offset.as_array()
    proposed = CouchCorrection(
        float(translation[0]),
        float(translation[1]),
        float(translation[2]),
        refit.pitch_deg,
        refit.roll_deg,
        refit.yaw_deg,
    )
    values = proposed.as_dict()
    applied = profile.applied_axes
    beyond = tuple(
        axis for axis in applied if _rounded_abs(values[_field(axis)]) > profile.axis(axis).limit
    )
    within = all(
        _rounded_abs(values[_field(axis)])
        <= (profile.no_move_tolerance_deg if axis.is_rotation else profile.no_move_tolerance_mm)
        for axis in applied
    )
    if beyond:
        flags.append(CorrectionFlag.BEYOND_LIMIT)
        messages.extend(
            f"{axis.value} {values[_field(axis)]:+.2f} {axis.unit} is beyond the "
            f"±{profile.axis(axis).limit:g} {axis.unit} limit of {profile.name}: not clipped; "
            "re-position the patient or override with care."
            for axis in beyond
        )
    to_apply = NO_MOVE if within else proposed
    if within:
        flags.append(CorrectionFlag.WITHIN_TOLERANCE)
        messages.append(
            f"Every applied axis is within the no-move tolerance of {profile.name} "
            f"({profile.no_move_tolerance_mm:g} mm, {profile.no_move_tolerance_deg:g}°): no move."
        )
    measured_values = measured.as_dict()
    not_applied = [
        axis
        for axis in MachineAxis
        if axis.is_rotation
        and axis not in applied
        and _rounded_abs(measured_values[_field(axis)]) > 0.0
    ]
    if not_applied:
        flags.append(CorrectionFlag.NOT_APPLIED_ROTATIONS)
        listed = ", ".join(f"{ax.value} {measured_values[_field(ax)]:+.2f}°" for ax in not_applied)
        messages.append(f"{profile.name} does not apply {listed} (measured): left as residual.")
    residual_motion = planning_to_daily.then(
        machine_move_lps(to_apply, isocenter, position, profile, rotation_axis_point)
    )
    return MachineCorrection(
        profile_name=profile.name,
        planning_to_daily_lps=planning_to_daily,
        isocenter_lps_mm=isocenter,
        patient_position=position,
        measured=measured,
        proposed=proposed,
        to_apply=to_apply,
        residual=couch_correction_6dof(residual_motion, isocenter, position),
        beyond_limit=beyond,
        flags=tuple(flags),
        isocenter_offset_from_axis=offset,
        messages=tuple(messages),
    )


def machine_move_lps(
    correction: CouchCorrection,
    isocenter: LpsPoint,
    position: PatientPosition,
    profile: MachineProfile,
    rotation_axis_point: LpsPoint | None = None,
) -> RigidTransformLps:
    """Where the machine's move puts a point of today's anatomy, relative to the beam (LPS mm).

    ``q ↦ R·(q + t − c) + c`` with ``t`` and ``R`` the correction's translation and rotation in
    LPS and ``c`` the rotation centre: the bore-axis point for a gantry-angle roll when given,
    else the plan isocentre (the room isocentre after the translation).
    """
    a = lps_to_iec_matrix(position)
    rotation_lps = (
        a.T @ iec_rotation_matrix(correction.pitch_deg, correction.roll_deg, correction.yaw_deg) @ a
    )
    translation_lps = a.T @ correction.translation.as_array()
    centre = isocenter
    if profile.rolls_about_bore_axis and rotation_axis_point is not None:
        centre = rotation_axis_point
    c = centre.as_array()
    return RigidTransformLps.from_rotation_translation(
        rotation_lps, rotation_lps @ (translation_lps - c) + c
    )


def _field(axis: MachineAxis) -> str:
    return f"{axis.value}_{axis.unit}"


def _rounded_abs(value: float) -> float:
    return abs(round(value, _COMPARISON_DECIMALS))

"""The registration after a physician's adjustment: the measured motion composed with the nudge.

When the physician signs a correction that differs from the one the registration proposed, the
REG must still carry the *measured* rotations: ``correction_as_planning_to_daily(signed)`` would
replace them by the signed angles (on a 3-DOF couch: by zero), which turns a 0.3 mm nudge into a
change of the exported rotation of up to the whole measured rotation.

Convention
----------
Both corrections are in IEC table axes and of the same kind (both what the same machine
applies, e.g. both :attr:`MachineCorrection.proposed` values). The **adjustment** is their
component-wise difference ``δ = signed − registered`` (mm and degrees). As a couch motion, ``δ``
is a translation ``δt`` and a rotation ``R_δ = iec_rotation_matrix(δpitch, δroll, δyaw)`` about
the isocentre; the anatomy motion it would undo is applied after ``M`` about the isocentre's
position *today* (``M·P``)::

    M' = A_δ ∘ M,    A_δ(x) = R_aδ·(x − M·P) + M·P + d_δ

with ``R_aδ = Aᵀ·R_δᵀ·A`` and ``d_δ = −Aᵀ·δt`` (``A``: LPS → table axes). Then, exactly:

* ``couch_correction_6dof(M')`` has translation ``registered 6-DOF translation + δt`` (the
  isocentre's displacement changes by ``d_δ`` only), and
* its rotation is ``R_c·R_δ`` with ``R_c`` the measured correction rotation: with ``δ``
  rotations zero, the measured rotations are unchanged to rounding; a small angular nudge adds
  to the measured angles to first order.
"""

from __future__ import annotations

from dataclasses import dataclass

from registration.couch import CouchCorrection
from registration.frames import PatientPosition, iec_rotation_matrix, lps_to_iec_matrix
from registration.geometry import LpsPoint, RigidTransformLps


@dataclass(frozen=True, slots=True)
class AdjustedRegistration:
    """What the REG after an adjusted sign-off carries, and what it is.

    ``planning_to_daily_lps``: ``M'`` (see module docstring); ``adjustment``: ``δ`` (IEC table
    axes, mm and degrees); ``adjusted``: False when ``δ`` is zero (then ``M' = M``).
    """

    planning_to_daily_lps: RigidTransformLps
    adjustment: CouchCorrection
    adjusted: bool

    @property
    def description(self) -> str:
        """One line for the REG's content description and the audit trail."""
        if not self.adjusted:
            return "Registration as measured (6 DOF); signed without adjustment."
        d = self.adjustment
        return (
            "Registration as measured (6 DOF) composed with the physician's adjustment "
            f"(lateral {d.lateral_mm:+.2f} mm, longitudinal {d.longitudinal_mm:+.2f} mm, "
            f"vertical {d.vertical_mm:+.2f} mm, pitch {d.pitch_deg:+.2f}°, "
            f"roll {d.roll_deg:+.2f}°, yaw {d.yaw_deg:+.2f}°, IEC table axes)."
        )


def correction_difference(signed: CouchCorrection, registered: CouchCorrection) -> CouchCorrection:
    """``signed − registered``, component by component (mm and degrees)."""
    s, r = signed.as_dict(), registered.as_dict()
    return CouchCorrection(**{name: s[name] - r[name] for name in s})


def adjusted_planning_to_daily(
    planning_to_daily: RigidTransformLps,
    registered: CouchCorrection,
    signed: CouchCorrection,
    isocenter: LpsPoint,
    position: PatientPosition,
) -> AdjustedRegistration:
    """``M`` composed with the physician's adjustment ``signed − registered`` (module docstring)."""
    delta = correction_difference(signed, registered)
    adjusted = any(abs(v) > 0.0 for v in delta.as_dict().values())
    if not adjusted:
        return AdjustedRegistration(planning_to_daily, delta, adjusted=False)
    a = lps_to_iec_matrix(position)
    rot_anatomy_lps = (
        a.T @ iec_rotation_matrix(delta.pitch_deg, delta.roll_deg, delta.yaw_deg).T @ a
    )
    d_lps = -(a.T @ delta.translation.as_array())
    today_iso = planning_to_daily.apply(isocenter).as_array()
    adjustment_motion = RigidTransformLps.from_rotation_translation(
        rot_anatomy_lps, today_iso + d_lps - rot_anatomy_lps @ today_iso
    )
    return AdjustedRegistration(planning_to_daily.then(adjustment_motion), delta, adjusted=True)

"""From a registration to the couch correction: the sign is stated here and nowhere else.

Given ``planning_to_daily`` (``M``: the anatomy at planning point ``p`` is at ``M·p`` in today's
image, both in LPS mm) and the plan isocentre ``iso`` (LPS mm):

* the anatomy moved by ``d = M·iso − iso`` at the isocentre and rotated by ``R`` (the rotation
  part of ``M``);
* the **couch correction** undoes that motion: translate the couch by ``−d``, then rotate it
  by ``Rᵀ`` about the room isocentre. Applied to today's anatomy this gives back the plan
  exactly, ``C(M·p) = p`` for every ``p``; translations are therefore *evaluated at the isocentre*,
  not at the image origin or at elastix's centre of rotation.
* both are expressed in IEC 61217 table axes for the patient position (see
  :mod:`registration.frames`): ``lateral_mm, longitudinal_mm, vertical_mm = A·(−d)`` and
  ``pitch_deg, roll_deg, yaw_deg`` = the IEC angles of ``A·Rᵀ·Aᵀ``.

Machines that cannot rotate in every axis (``dof``): the 6-DOF correction is always computed and
kept; the correction for the machine is *refitted* with the angles it cannot apply held at zero,
minimising the residual displacement over a sphere around the isocentre. Because the residual is
affine in position, its mean over a sphere centred on the isocentre is its value at the
isocentre, so the refitted translation is still ``−d``; with ``dof = 4`` the roll is the
least-squares angle about the table Y axis, ``atan2(R₂₀ − R₀₂, R₀₀ + R₂₂)`` of the anatomy
rotation in table axes (maximising ``tr(Ry(θ)·R)``), which is not the Euler roll of the 6-DOF
answer when pitch or yaw are large.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, unique
from typing import ClassVar

import numpy as np

from registration.frames import (
    FloatArray,
    PatientPosition,
    iec_angles_from_matrix,
    iec_rotation_matrix,
    lps_to_iec_matrix,
)
from registration.geometry import IecTableVector, LpsPoint, LpsVector, RigidTransformLps


@unique
class Dof(IntEnum):
    """Degrees of freedom the treatment couch can correct."""

    TRANSLATIONS = 3  #: lateral, longitudinal, vertical
    TRANSLATIONS_ROLL = 4  #: as on TomoTherapy (roll by gantry start angle)
    SIX = 6  #: a 6-DOF couch


@dataclass(frozen=True, slots=True)
class CouchCorrection:
    """A couch motion in IEC 61217 table axes: translate, then rotate about the isocentre.

    Rotation order and signs are those of :func:`registration.frames.iec_rotation_matrix`.
    """

    lateral_mm: float
    longitudinal_mm: float
    vertical_mm: float
    pitch_deg: float
    roll_deg: float
    yaw_deg: float

    #: the six field names, translations first, in IEC 61217 table axes X, Y, Z
    AXES: ClassVar[tuple[str, ...]] = (
        "lateral_mm",
        "longitudinal_mm",
        "vertical_mm",
        "pitch_deg",
        "roll_deg",
        "yaw_deg",
    )
    TRANSLATION_AXES: ClassVar[tuple[str, ...]] = AXES[:3]

    @classmethod
    def from_dict(cls, values: Mapping[str, float]) -> CouchCorrection:
        """The inverse of :meth:`as_dict`; a missing axis is refused by name."""
        missing = [axis for axis in cls.AXES if axis not in values]
        if missing:
            raise ValueError(f"couch correction without {', '.join(missing)}: got {dict(values)}")
        return cls(*(float(values[axis]) for axis in cls.AXES))

    @classmethod
    def from_attributes(cls, source: object) -> CouchCorrection:
        """From any object with the six axes as attributes (a table row's columns)."""
        return cls(*(float(getattr(source, axis)) for axis in cls.AXES))

    @property
    def translation(self) -> IecTableVector:
        return IecTableVector(self.lateral_mm, self.longitudinal_mm, self.vertical_mm)

    def translation_length_mm(self) -> float:
        return float(np.linalg.norm(self.translation.as_array()))

    def max_abs_translation_mm(self) -> float:
        return float(np.max(np.abs(self.translation.as_array())))

    def max_abs_rotation_deg(self) -> float:
        return max(abs(self.pitch_deg), abs(self.roll_deg), abs(self.yaw_deg))

    def exceeds_margin(self, margin_mm: float) -> bool:
        """True when a translation along any table axis is larger than the PTV ``margin_mm``.

        >>> CouchCorrection(1.0, -5.5, 0.0, 0.0, 2.0, 0.0).exceeds_margin(5.0)
        True
        >>> CouchCorrection(1.0, -5.0, 0.0, 0.0, 9.0, 0.0).exceeds_margin(5.0)
        False
        """
        return self.max_abs_translation_mm() > margin_mm

    def rounded(self, mm_decimals: int = 2, deg_decimals: int = 2) -> CouchCorrection:
        def r(v: float, n: int) -> float:
            return round(v, n) + 0.0  # + 0.0 turns -0.0 into 0.0

        return CouchCorrection(
            r(self.lateral_mm, mm_decimals),
            r(self.longitudinal_mm, mm_decimals),
            r(self.vertical_mm, mm_decimals),
            r(self.pitch_deg, deg_decimals),
            r(self.roll_deg, deg_decimals),
            r(self.yaw_deg, deg_decimals),
        )

    def as_dict(self) -> dict[str, float]:
        return {axis: float(getattr(self, axis)) for axis in self.AXES}


def anatomy_displacement_at(planning_to_daily: RigidTransformLps, isocenter: LpsPoint) -> LpsVector:
    """``d = M·iso − iso``: where the anatomy at the isocentre has gone today (LPS mm)."""
    moved = planning_to_daily.apply(isocenter).as_array()
    return LpsVector.from_array(moved - isocenter.as_array())


def couch_correction_6dof(
    planning_to_daily: RigidTransformLps, isocenter: LpsPoint, position: PatientPosition
) -> CouchCorrection:
    """The full 6-DOF couch correction that undoes ``planning_to_daily`` (see module docstring)."""
    d_lps = anatomy_displacement_at(planning_to_daily, isocenter)
    t_iec = LpsVector.from_array(-d_lps.as_array()).to_iec(position)
    pitch_deg, roll_deg, yaw_deg = iec_angles_from_matrix(
        _correction_rotation_iec(planning_to_daily, position)
    )
    return CouchCorrection(
        t_iec.lateral_mm, t_iec.longitudinal_mm, t_iec.vertical_mm, pitch_deg, roll_deg, yaw_deg
    )


def couch_correction_for_dof(
    planning_to_daily: RigidTransformLps,
    isocenter: LpsPoint,
    position: PatientPosition,
    dof: Dof,
) -> CouchCorrection:
    """The correction a couch with ``dof`` degrees of freedom should apply (refitted)."""
    full = couch_correction_6dof(planning_to_daily, isocenter, position)
    if dof is Dof.SIX:
        return full
    roll_deg = 0.0
    if dof is Dof.TRANSLATIONS_ROLL:
        roll_deg = best_roll_deg(_correction_rotation_iec(planning_to_daily, position))
    return CouchCorrection(
        full.lateral_mm, full.longitudinal_mm, full.vertical_mm, 0.0, roll_deg, 0.0
    )


def best_roll_deg(correction_rotation_iec: FloatArray) -> float:
    """The rotation about table Y closest (least squares over a sphere) to a table rotation."""
    r = np.asarray(correction_rotation_iec, dtype=np.float64)
    # Ry(θ) closest to S maximises tr(Ry(θ)ᵀ·S) = cos θ (S00 + S22) + sin θ (S02 − S20) + S11.
    return math.degrees(math.atan2(float(r[0, 2] - r[2, 0]), float(r[0, 0] + r[2, 2])))


def correction_as_planning_to_daily(
    correction: CouchCorrection, isocenter: LpsPoint, position: PatientPosition
) -> RigidTransformLps:
    """The anatomy motion that ``correction`` would exactly undo (inverse of the 6-DOF formula).

    Used to turn a physician's adjusted correction back into a matrix, and by tests.
    """
    a = lps_to_iec_matrix(position)
    rot_corr_lps = (
        a.T @ iec_rotation_matrix(correction.pitch_deg, correction.roll_deg, correction.yaw_deg) @ a
    )
    rot_anatomy_lps = rot_corr_lps.T
    d_lps = -(a.T @ correction.translation.as_array())
    iso = isocenter.as_array()
    # M·p = R·(p − iso) + iso + d  ⇒  t = iso + d − R·iso
    return RigidTransformLps.from_rotation_translation(
        rot_anatomy_lps, iso + d_lps - rot_anatomy_lps @ iso
    )


def _correction_rotation_iec(
    planning_to_daily: RigidTransformLps, position: PatientPosition
) -> FloatArray:
    a = lps_to_iec_matrix(position)
    result: FloatArray = a @ planning_to_daily.rotation.T @ a.T
    return result

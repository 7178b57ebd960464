"""What is left at the target and the organs at risk after the couch applies a correction.

Definition
----------
``M`` (``planning_to_daily``) maps a planning point ``p`` to where that anatomy is in today's
image (LPS mm, :mod:`registration.couch`). A couch correction ``C`` exactly undoes the anatomy
motion ``M_applied = correction_as_planning_to_daily(C, iso, position)``, so after the couch move
the anatomy of ``p`` sits at ``M_applied⁻¹·M·p``. Its **residual** is

    r(p) = | M_applied⁻¹ · M · p − p |      (mm)

zero everywhere when the couch applies the full 6-DOF correction, and growing with the distance
from the isocentre when it cannot apply an angle (pitch and yaw on TomoTherapy): a rotation
``θ`` left uncorrected moves a point at distance ``ρ`` from the rotation axis through the
isocentre by ``2·ρ·sin(θ/2)``. Per structure the maximum and the 95th percentile (linear
interpolation) over its surface points are reported; surface points are the centres of the
rasterised mask's boundary voxels (:func:`registration.rt_raster.surface_points_lps_mm`), or,
without structures, 2000 points on the 50 mm sphere around the isocentre.

Warning rules (:func:`residual_warnings`)
-----------------------------------------
* a target (type PTV; without structures, the isocentre sphere) whose residual max is at least
  half the course's PTV margin;
* a serial organ at risk — type ORGAN and a name containing one of
  :data:`SERIAL_OAR_NAME_PARTS` (case-insensitive; a course setting) — whose residual max exceeds
  its planning-risk-volume margin (a course setting, default 3 mm).
Each warning names the uncorrected motion in the couch's own axes ("an uncorrected pitch of
4.5° moves the PTV edge by 3.9 mm"); any warning makes the result untrusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from registration.couch import (
    CouchCorrection,
    correction_as_planning_to_daily,
    couch_correction_6dof,
)
from registration.frames import FloatArray, PatientPosition
from registration.geometry import LpsPoint, RigidTransformLps
from registration.rt_raster import (
    rasterize_structure,
    sphere_surface_points_lps_mm,
    surface_points_lps_mm,
)
from registration.rtstruct import StructureSet

__all__ = [
    "ISOCENTER_SPHERE_RADIUS_MM",
    "ISOCENTER_SPHERE_TYPE",
    "SERIAL_OAR_NAME_PARTS",
    "ResidualPolicy",
    "StructureResidual",
    "StructureSurface",
    "describe_uncorrected",
    "isocenter_sphere_surface",
    "residual_motion",
    "residual_surfaces",
    "residual_warnings",
    "structure_residuals",
    "structure_surfaces",
]

ISOCENTER_SPHERE_RADIUS_MM = 50.0
ISOCENTER_SPHERE_TYPE = "ISOCENTRE_SPHERE"
SERIAL_OAR_NAME_PARTS = ("cord", "brainstem", "brain stem", "optic", "chiasm")
_NEGLIGIBLE_DEG = 0.05
_NEGLIGIBLE_MM = 0.05


@dataclass(frozen=True, eq=False)
class StructureSurface:
    """A structure's surface sample: ``points_lps_mm`` (N, 3), LPS mm, planning frame."""

    name: str
    interpreted_type: str
    points_lps_mm: FloatArray


@dataclass(frozen=True, slots=True)
class StructureResidual:
    """Residual displacement over one structure's surface (mm)."""

    structure: str
    interpreted_type: str
    max_mm: float
    p95_mm: float
    point_count: int

    def as_dict(self) -> dict[str, str | float]:
        """The fraction JSON's ``residuals`` item."""
        return {
            "structure": self.structure,
            "type": self.interpreted_type,
            "max_mm": self.max_mm,
            "p95_mm": self.p95_mm,
        }


@dataclass(frozen=True, slots=True)
class ResidualPolicy:
    """Course settings of the warning rules (mm)."""

    ptv_margin_mm: float = 3.0
    prv_margin_mm: float = 3.0
    serial_oar_name_parts: tuple[str, ...] = SERIAL_OAR_NAME_PARTS

    def is_serial_oar(self, residual: StructureResidual) -> bool:
        name = residual.structure.casefold()
        return residual.interpreted_type == "ORGAN" and any(
            part.casefold() in name for part in self.serial_oar_name_parts
        )


def structure_surfaces(
    structure_set: StructureSet, grid: sitk.Image, names: Sequence[str] | None = None
) -> tuple[StructureSurface, ...]:
    """Surface points of every ROI (or of ``names``) that covers at least one voxel of ``grid``."""
    chosen = (
        structure_set.structures if names is None else [structure_set.structure(n) for n in names]
    )
    result = []
    for structure in chosen:
        points = surface_points_lps_mm(rasterize_structure(structure, grid), grid)
        if points.shape[0]:
            result.append(StructureSurface(structure.name, structure.interpreted_type, points))
    return tuple(result)


def isocenter_sphere_surface(
    isocenter: LpsPoint, radius_mm: float = ISOCENTER_SPHERE_RADIUS_MM
) -> StructureSurface:
    """The stand-in target when there are no structures: the sphere around the isocentre."""
    return StructureSurface(
        f"{radius_mm:g} mm sphere around the isocentre",
        ISOCENTER_SPHERE_TYPE,
        sphere_surface_points_lps_mm(isocenter, radius_mm),
    )


def residual_surfaces(
    structure_set: StructureSet | None, grid: sitk.Image, isocenter: LpsPoint
) -> tuple[StructureSurface, ...]:
    """What a fraction's residuals are computed over: every ROI on the planning grid, plus the
    isocentre sphere standing in for the target when no ROI has type PTV (or there are none)."""
    surfaces = () if structure_set is None else structure_surfaces(structure_set, grid)
    if any(s.interpreted_type == "PTV" for s in surfaces):
        return surfaces
    return (*surfaces, isocenter_sphere_surface(isocenter))


def residual_motion(
    planning_to_daily: RigidTransformLps,
    applied: CouchCorrection,
    isocenter: LpsPoint,
    position: PatientPosition,
) -> RigidTransformLps:
    """``M_applied⁻¹·M``: where each planning point's anatomy is after the couch move."""
    m_applied = correction_as_planning_to_daily(applied, isocenter, position)
    return planning_to_daily.then(m_applied.inverse())


def structure_residuals(
    planning_to_daily: RigidTransformLps,
    applied: CouchCorrection,
    isocenter: LpsPoint,
    position: PatientPosition,
    surfaces: Sequence[StructureSurface],
) -> tuple[StructureResidual, ...]:
    """Residual ``max_mm`` and ``p95_mm`` per surface (see the module docstring)."""
    motion = residual_motion(planning_to_daily, applied, isocenter, position)
    result = []
    for surface in surfaces:
        points = surface.points_lps_mm
        if points.shape[0] == 0:
            continue
        distance_mm = np.linalg.norm(motion.apply_array(points) - points, axis=1)
        result.append(
            StructureResidual(
                surface.name,
                surface.interpreted_type,
                float(distance_mm.max()),
                float(np.percentile(distance_mm, 95)),
                int(points.shape[0]),
            )
        )
    return tuple(result)


def describe_uncorrected(
    planning_to_daily: RigidTransformLps,
    applied: CouchCorrection,
    isocenter: LpsPoint,
    position: PatientPosition,
) -> str:
    """The part of the correction the couch does not apply, in words ("an uncorrected pitch
    of 4.5°"), from the 6-DOF correction that would still be needed after ``applied``."""
    still = couch_correction_6dof(
        residual_motion(planning_to_daily, applied, isocenter, position), isocenter, position
    )
    parts = [
        f"{axis} of {value:+.1f}°"
        for axis, value in (
            ("pitch", still.pitch_deg),
            ("roll", still.roll_deg),
            ("yaw", still.yaw_deg),
        )
        if abs(value) >= _NEGLIGIBLE_DEG
    ]
    shift_mm = still.translation_length_mm()
    if shift_mm >= _NEGLIGIBLE_MM:
        parts.append(f"shift of {shift_mm:.1f} mm at the isocentre")
    if not parts:
        return "the remaining motion"
    joined = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"an uncorrected {joined}"


def residual_warnings(
    residuals: Sequence[StructureResidual], uncorrected: str, policy: ResidualPolicy
) -> tuple[str, ...]:
    """The warnings of the rules in the module docstring; any warning means untrusted.

    ``uncorrected`` is :func:`describe_uncorrected`'s text for the same correction.
    """
    warnings = []
    half_mm = policy.ptv_margin_mm / 2.0
    for r in residuals:
        if r.interpreted_type in ("PTV", ISOCENTER_SPHERE_TYPE) and r.max_mm >= half_mm:
            edge = "the PTV edge" if r.interpreted_type == "PTV" else f"the {r.structure}"
            label = (
                f" ({r.structure})" if r.interpreted_type == "PTV" and r.structure != "PTV" else ""
            )
            warnings.append(
                f"{uncorrected} moves {edge}{label} by {r.max_mm:.1f} mm, at least half the "
                f"{policy.ptv_margin_mm:g} mm PTV margin"
            )
        elif policy.is_serial_oar(r) and r.max_mm > policy.prv_margin_mm:
            warnings.append(
                f"{uncorrected} moves {r.structure} by {r.max_mm:.1f} mm, more than its "
                f"{policy.prv_margin_mm:g} mm planning-risk-volume margin"
            )
    return tuple(warnings)

"""Frozen value types, one per coordinate frame, so that LPS and IEC values cannot be mixed.

The frames themselves are defined in :mod:`registration.frames`. A :class:`RigidTransformLps`
always carries its direction in the name of the variable holding it (``planning_to_daily``):
it maps a point of one image's patient frame to the corresponding point of another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from registration.frames import FloatArray, PatientPosition, lps_to_iec_matrix

_LAST_ROW = np.array([0.0, 0.0, 0.0, 1.0])
_IDENTITY_3 = np.eye(3)


def _all_close(a: FloatArray, b: FloatArray, *, atol: float) -> bool:
    """``np.allclose(a, b, rtol=1e-5, atol=atol)`` for finite arrays, without its overhead
    (transforms are built hundreds of times per registration)."""
    return bool(np.all(np.abs(a - b) <= atol + 1e-5 * np.abs(b)))


@dataclass(frozen=True, slots=True)
class LpsPoint:
    """A point in the DICOM patient frame (LPS), millimetres."""

    x_mm: float
    y_mm: float
    z_mm: float

    @classmethod
    def from_array(cls, values: Sequence[float] | FloatArray) -> LpsPoint:
        x, y, z = (float(v) for v in values)
        return cls(x, y, z)

    @classmethod
    def parse(cls, text: str) -> LpsPoint:
        """Read ``"x,y,z"`` (mm, LPS); raise ``ValueError`` with the text on anything else."""
        parts = [p.strip() for p in text.split(",")]
        try:
            if len(parts) != 3:
                raise ValueError
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(
                f"isocentre {text!r} is not three comma-separated numbers 'x,y,z' in mm (DICOM LPS)"
            ) from None
        if not all(np.isfinite(values)):
            raise ValueError(f"isocentre {text!r} contains a non-finite number")
        return cls.from_array(values)

    def as_array(self) -> FloatArray:
        return np.array([self.x_mm, self.y_mm, self.z_mm], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class LpsVector:
    """A displacement in the DICOM patient frame (LPS), millimetres."""

    x_mm: float
    y_mm: float
    z_mm: float

    @classmethod
    def from_array(cls, values: Sequence[float] | FloatArray) -> LpsVector:
        x, y, z = (float(v) for v in values)
        return cls(x, y, z)

    def as_array(self) -> FloatArray:
        return np.array([self.x_mm, self.y_mm, self.z_mm], dtype=np.float64)

    def to_iec(self, position: PatientPosition) -> IecTableVector:
        """The same displacement in IEC 61217 table axes for a patient lying in ``position``."""
        return IecTableVector.from_array(lps_to_iec_matrix(position) @ self.as_array())


@dataclass(frozen=True, slots=True)
class IecTableVector:
    """A displacement in IEC 61217 table axes, mm (X lateral, Y longitudinal, Z vertical)."""

    lateral_mm: float
    longitudinal_mm: float
    vertical_mm: float

    @classmethod
    def from_array(cls, values: Sequence[float] | FloatArray) -> IecTableVector:
        x, y, z = (float(v) for v in values)
        return cls(x, y, z)

    def as_array(self) -> FloatArray:
        return np.array([self.lateral_mm, self.longitudinal_mm, self.vertical_mm], dtype=np.float64)

    def to_lps(self, position: PatientPosition) -> LpsVector:
        """The same displacement in the DICOM patient frame (inverse of ``to_iec``)."""
        return LpsVector.from_array(lps_to_iec_matrix(position).T @ self.as_array())


@dataclass(frozen=True, slots=True)
class RigidTransformLps:
    """A rigid map between two DICOM patient frames: ``q = R · p + t`` (mm, LPS).

    Stored as the 4×4 homogeneous matrix (rows), the form written to JSON and to DICOM REG.
    """

    matrix: tuple[tuple[float, float, float, float], ...]

    def __post_init__(self) -> None:
        m = np.asarray(self.matrix, dtype=np.float64)
        if m.shape != (4, 4) or not np.all(np.isfinite(m)):
            raise ValueError("a rigid transform needs a finite 4×4 matrix")
        if not _all_close(m[3], _LAST_ROW, atol=1e-8):
            raise ValueError("the last row of a rigid 4×4 matrix must be 0 0 0 1")
        r = m[:3, :3]
        # atol 1e-5: the JSON form keeps 6 decimals, which moves R·Rᵀ off I by up to ~2e-6
        if not _all_close(r @ r.T, _IDENTITY_3, atol=1e-5) or np.linalg.det(r) < 0:
            raise ValueError("the 3×3 part of a rigid transform must be a proper rotation")

    @classmethod
    def from_array(cls, matrix: FloatArray | Sequence[Sequence[float]]) -> RigidTransformLps:
        m = np.asarray(matrix, dtype=np.float64)
        rows = tuple(tuple(float(v) for v in row) for row in m)
        return cls(rows)  # type: ignore[arg-type]

    @classmethod
    def from_rotation_translation(
        cls, rotation: FloatArray, translation_mm: FloatArray
    ) -> RigidTransformLps:
        m = np.eye(4)
        m[:3, :3] = rotation
        m[:3, 3] = translation_mm
        return cls.from_array(m)

    @classmethod
    def identity(cls) -> RigidTransformLps:
        return cls.from_array(np.eye(4))

    def as_array(self) -> FloatArray:
        return np.array(self.matrix, dtype=np.float64)

    @property
    def rotation(self) -> FloatArray:
        return self.as_array()[:3, :3]

    @property
    def translation_mm(self) -> FloatArray:
        return self.as_array()[:3, 3]

    def apply(self, point: LpsPoint) -> LpsPoint:
        return LpsPoint.from_array(self.rotation @ point.as_array() + self.translation_mm)

    def apply_array(self, points_mm: FloatArray) -> FloatArray:
        """Map an (N, 3) array of LPS points."""
        return np.asarray(points_mm, dtype=np.float64) @ self.rotation.T + self.translation_mm

    def inverse(self) -> RigidTransformLps:
        r = self.rotation
        return RigidTransformLps.from_rotation_translation(r.T, -r.T @ self.translation_mm)

    def then(self, other: RigidTransformLps) -> RigidTransformLps:
        """The transform that applies ``self`` first and ``other`` second."""
        return RigidTransformLps.from_array(other.as_array() @ self.as_array())

    def rotation_angle_deg(self) -> float:
        """Magnitude of the rotation (axis-angle), degrees."""
        cos_a = (float(np.trace(self.rotation)) - 1.0) / 2.0
        return float(np.degrees(np.arccos(np.clip(cos_a, -1.0, 1.0))))

    def as_rows(self) -> list[list[float]]:
        return [list(row) for row in self.matrix]

"""Coordinate frames and the one place where DICOM patient axes become IEC 61217 table axes.

Frames
------
**DICOM patient frame (LPS)**, millimetres, right-handed:
    +x to the patient's left, +y to the patient's posterior, +z to the patient's head.
    Every image geometry (ImagePositionPatient, ImageOrientationPatient, the SimpleITK origin and
    direction) and every matrix called ``*_lps`` lives in this frame.

**IEC 61217 table frame**, millimetres and degrees, right-handed:
    +X (lateral) to the right of an observer standing at the foot of the couch facing the gantry,
    +Y (longitudinal) towards the gantry, +Z (vertical) up.

Mapping (DICOM PS3.3 C.7.3.1.1.2, Patient Position 0018,5100) — the IEC axes expressed in LPS::

    position  lateral X   longitudinal Y   vertical Z
    HFS         +x           +z               -y        head first, supine
    HFP         -x           +z               +y        head first, prone
    FFS         -x           -z               -y        feet first, supine
    FFP         +x           -z               +y        feet first, prone

Each mapping is a proper rotation (determinant +1), so a rotation of the anatomy keeps its
handedness when it is expressed in table axes: ``R_iec = A · R_lps · Aᵀ`` with ``A`` the matrix
returned by :func:`lps_to_iec_matrix`.

Table rotations (IEC 61217, as used by DICOM RT)
------------------------------------------------
pitch about +X, roll about +Y, yaw (isocentric) about +Z; each angle is positive when the rotation
is clockwise seen from the origin looking along the positive axis, i.e. counter-clockwise by the
right-hand rule seen from the positive end: the ordinary right-handed rotation matrices
``Rx(pitch)``, ``Ry(roll)``, ``Rz(yaw)``. The table top is yawed first, then pitched, then rolled
about its own (already pitched) Y axis, so the active rotation of the table top in table axes is::

    R_table = Rz(yaw) · Rx(pitch) · Ry(roll)

see :func:`iec_rotation_matrix` and :func:`iec_angles_from_matrix`.
"""

from __future__ import annotations

import math
from enum import StrEnum, unique

import numpy as np
import numpy.typing as npt

from registration.errors import UnsupportedPositionError

FloatArray = npt.NDArray[np.float64]


@unique
class PatientPosition(StrEnum):
    """DICOM Patient Position (0018,5100) values this product supports."""

    HFS = "HFS"  #: head first, supine
    HFP = "HFP"  #: head first, prone
    FFS = "FFS"  #: feet first, supine
    FFP = "FFP"  #: feet first, prone

    @classmethod
    def parse(cls, value: str | None) -> PatientPosition:
        """Read a Patient Position string; refuse anything but HFS, HFP, FFS, FFP."""
        text = (value or "").strip().upper()
        try:
            return cls(text)
        except ValueError:
            supported = ", ".join(p.value for p in cls)
            shown = repr(value) if value else "missing"
            raise UnsupportedPositionError(
                f"Patient Position {shown} is not supported; supported positions are {supported}. "
                "Re-export the series with the patient position set, or give it explicitly."
            ) from None


# Rows: IEC X, Y, Z; columns: LPS x, y, z. Written out once; everything else derives from it.
_LPS_TO_IEC: dict[PatientPosition, tuple[tuple[int, int, int], ...]] = {
    PatientPosition.HFS: ((1, 0, 0), (0, 0, 1), (0, -1, 0)),
    PatientPosition.HFP: ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
    PatientPosition.FFS: ((-1, 0, 0), (0, 0, -1), (0, -1, 0)),
    PatientPosition.FFP: ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
}


def lps_to_iec_matrix(position: PatientPosition) -> FloatArray:
    """The 3×3 rotation ``A`` with ``v_iec = A · v_lps`` for a patient lying in ``position``."""
    return np.array(_LPS_TO_IEC[position], dtype=np.float64)


def rot_x(angle_deg: float) -> FloatArray:
    """Right-handed rotation about +X by ``angle_deg``."""
    a_rad = math.radians(angle_deg)
    c, s = math.cos(a_rad), math.sin(a_rad)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(angle_deg: float) -> FloatArray:
    """Right-handed rotation about +Y by ``angle_deg``."""
    a_rad = math.radians(angle_deg)
    c, s = math.cos(a_rad), math.sin(a_rad)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(angle_deg: float) -> FloatArray:
    """Right-handed rotation about +Z by ``angle_deg``."""
    a_rad = math.radians(angle_deg)
    c, s = math.cos(a_rad), math.sin(a_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def iec_rotation_matrix(pitch_deg: float, roll_deg: float, yaw_deg: float) -> FloatArray:
    """``Rz(yaw) · Rx(pitch) · Ry(roll)``: the table-top rotation in IEC table axes."""
    return rot_z(yaw_deg) @ rot_x(pitch_deg) @ rot_y(roll_deg)


def iec_angles_from_matrix(rotation: FloatArray) -> tuple[float, float, float]:
    """Invert :func:`iec_rotation_matrix`: ``(pitch_deg, roll_deg, yaw_deg)``.

    Unique for |pitch| < 90°, which covers every couch. With ``R = Rz(c)·Rx(a)·Ry(b)``:
    ``R[2,1] = sin a``, ``R[2,0] = -cos a · sin b``, ``R[2,2] = cos a · cos b``,
    ``R[0,1] = -sin c · cos a``, ``R[1,1] = cos c · cos a``.
    """
    r = np.asarray(rotation, dtype=np.float64)
    pitch_rad = math.asin(max(-1.0, min(1.0, float(r[2, 1]))))
    roll_rad = math.atan2(-float(r[2, 0]), float(r[2, 2]))
    yaw_rad = math.atan2(-float(r[0, 1]), float(r[1, 1]))
    return math.degrees(pitch_rad), math.degrees(roll_rad), math.degrees(yaw_rad)

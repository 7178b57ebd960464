"""When a registration is trusted: the rules, their thresholds and the words shown to people.

Every rule that fails adds one reason (a sentence starting "not trusted:") to the result's
warnings; a result is trusted only when none fails. Distances are compared over points filling a
:data:`TRE_SPHERE_RADIUS_MM` sphere about the isocentre (LPS mm), so a rotation counts by how far
it moves the anatomy that is treated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from registration.couch import CouchCorrection
from registration.frames import FloatArray
from registration.geometry import LpsPoint, RigidTransformLps
from registration.result import RegistrationQuality

SECOND_OPINION_TOLERANCE_MM = 2.0
#: Results beyond these are not wrong but are marked for a human look (DOMAIN: TG-142 scale).
MAX_TRUSTED_SHIFT_MM = 20.0
MAX_TRUSTED_ROTATION_DEG = 5.0
#: The capture range the global search is built and benchmarked for (each axis).
CAPTURE_RANGE_MM = 40.0
CAPTURE_RANGE_DEG = 10.0
MIN_TRUSTED_OVERLAP = 0.80
TRE_SPHERE_RADIUS_MM = 50.0


@dataclass(frozen=True, slots=True)
class SearchFindings:
    """What the global search and the check of its best distinct alternative found."""

    at_search_edge: bool = False  #: the best start lay on the border of the searched range
    #: a distinct optimum (mm apart over the sphere) whose similarity is as good as the answer's
    rival_distance_mm: float | None = None


def sphere_points(center: LpsPoint, radius_mm: float = TRE_SPHERE_RADIUS_MM) -> FloatArray:
    """A fixed, deterministic set of points filling a sphere (for TRE-like comparisons)."""
    g = np.linspace(-radius_mm, radius_mm, 11)
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    pts = pts[np.sum(pts**2, axis=1) <= radius_mm**2]
    result: FloatArray = pts + center.as_array()
    return result


def max_difference_mm(a: RigidTransformLps, b: RigidTransformLps, center: LpsPoint) -> float:
    """Largest distance between where ``a`` and ``b`` send points of the sphere about ``center``."""
    pts = sphere_points(center)
    return float(np.max(np.linalg.norm(a.apply_array(pts) - b.apply_array(pts), axis=1)))


def untrusted_reasons(
    quality: RegistrationQuality, full: CouchCorrection, search: SearchFindings
) -> list[str]:
    """Every rule the result breaks, as sentences for the reviewer (empty: trusted)."""
    reasons: list[str] = []
    if quality.overlap_fraction < MIN_TRUSTED_OVERLAP:
        reasons.append(
            f"not trusted: only {quality.overlap_fraction:.0%} of the MVCT anatomy lies inside the "
            "planning CT"
        )
    if not quality.converged:
        reasons.append(
            "not trusted: the match is not at the best similarity nearby (not converged); "
            "check the fusion by eye"
        )
    shift, angle = full.max_abs_translation_mm(), full.max_abs_rotation_deg()
    if search.at_search_edge or shift > CAPTURE_RANGE_MM or angle > CAPTURE_RANGE_DEG:
        reasons.append(
            f"not trusted: the set-up error may lie beyond the capture range (±"
            f"{CAPTURE_RANGE_MM:.0f} mm, ±{CAPTURE_RANGE_DEG:.0f}° per axis; found {shift:.1f} mm, "
            f"{angle:.1f}°); align by hand and register again"
        )
    elif shift > MAX_TRUSTED_SHIFT_MM:
        reasons.append(
            f"not trusted: shift of {shift:.1f} mm exceeds {MAX_TRUSTED_SHIFT_MM:.0f} mm; "
            "check the set-up and the match by eye"
        )
    if angle > MAX_TRUSTED_ROTATION_DEG and angle <= CAPTURE_RANGE_DEG:
        reasons.append(
            f"not trusted: rotation of {angle:.1f}° exceeds {MAX_TRUSTED_ROTATION_DEG:.0f}°; "
            "check the set-up and the match by eye"
        )
    if search.rival_distance_mm is not None:
        reasons.append(
            "not trusted: two distinct optima of similar similarity "
            f"({search.rival_distance_mm:.0f} mm apart near the isocentre), e.g. one vertebra "
            "off in a short scan; check the level by eye"
        )
    d = quality.second_estimate_disagreement_mm
    if d is not None and d > SECOND_OPINION_TOLERANCE_MM:
        reasons.append(
            f"not trusted: an independent second estimate differs by up to {d:.1f} mm within "
            f"{TRE_SPHERE_RADIUS_MM:.0f} mm of the isocentre"
        )
    return reasons

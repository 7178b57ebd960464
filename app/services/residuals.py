"""The residuals of a registered fraction for a given correction (the one being signed).

The course's structures come from the worker's cache (:mod:`app.jobs.planning_cache`); the rule
is :func:`app.jobs.residuals.assess`, the one the worker applies to the couch's correction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import numpy as np
from sqlalchemy.orm import Session

from app.db.models import Fraction
from app.db.models_planning import PlanningObject
from app.jobs import planning_cache
from app.jobs.planning_cache import CachedStructures, expected_file, structures_cache_file
from app.jobs.residuals import (
    ResidualAssessment,
    assess,
    known_surfaces,
    structure_surfaces,
    with_isocenter_sphere,
)
from app.storage import ImageStore
from registration.couch import CouchCorrection
from registration.dicom_series import read_ct_series
from registration.residuals import ISOCENTER_SPHERE_TYPE, ResidualPolicy
from registration.rtstruct import read_structure_set

#: surface points per target sent to the review page (evenly strided when there are more)
MAX_TARGET_POINTS: Final = 2000


def course_structures(
    store: ImageStore, session: Session, fraction: Fraction
) -> tuple[Path | None, CachedStructures | None]:
    """The fraction's rasterised structures (the worker's cache; rebuilt if it went missing)."""
    path = _cache_path(store, session, fraction)
    if path is None:
        return None, None
    rtstruct = session.get(PlanningObject, fraction.rtstruct_id)
    assert rtstruct is not None
    planning = fraction.course.planning_series
    cached = planning_cache.load(path)
    if cached is None:
        ct = read_ct_series(store.series_files(planning.content_sha256))
        cached = planning_cache.build(read_structure_set(expected_file(store, rtstruct)), ct.image)
        planning_cache.save(path, cached)
    return path, cached


def residuals_of_correction(
    store: ImageStore, session: Session, fraction: Fraction, correction: CouchCorrection
) -> ResidualAssessment | None:
    """Residuals of ``correction`` (e.g. the one being signed) for a registered fraction."""
    if fraction.result is None:
        return None
    path = _cache_path(store, session, fraction)
    surfaces = known_surfaces(path)  # kept in memory: no need to read the masks again
    if surfaces is None:
        surfaces = structure_surfaces(*course_structures(store, session, fraction))
    course = fraction.course
    policy = ResidualPolicy(
        course.ptv_margin_mm, course.prv_margin_mm, course.serial_oar_name_parts
    )
    return assess(fraction.result.engine_result, correction, surfaces, policy)


def target_points(
    store: ImageStore, session: Session, fraction: Fraction, limit: int = MAX_TARGET_POINTS
) -> list[dict[str, Any]]:
    """For the review page's live residual: per target (type PTV; the isocentre sphere for a
    course whose structures have none) of a registered fraction whose course has structures,
    ``name``, ``type`` and at most ``limit`` of its surface points (``points_lps_mm``, LPS mm,
    planning frame, evenly strided). Empty without a result or structures."""
    if fraction.result is None:
        return []
    path = _cache_path(store, session, fraction)
    if path is None:
        return []
    surfaces = known_surfaces(path)
    if surfaces is None:
        surfaces = structure_surfaces(*course_structures(store, session, fraction))
    if not surfaces:
        return []
    targets = []
    iso = fraction.result.engine_result.isocenter_lps_mm
    for surface in with_isocenter_sphere(surfaces, iso):
        if surface.interpreted_type not in ("PTV", ISOCENTER_SPHERE_TYPE):
            continue
        points = surface.points_lps_mm
        if points.shape[0] > limit:
            points = points[np.linspace(0, points.shape[0] - 1, limit).round().astype(int)]
        targets.append(
            {
                "name": surface.name,
                "type": surface.interpreted_type,
                "points_lps_mm": np.round(points, 2).tolist(),
            }
        )
    return targets


def _cache_path(store: ImageStore, session: Session, fraction: Fraction) -> Path | None:
    rtstruct = (
        None if fraction.rtstruct_id is None else session.get(PlanningObject, fraction.rtstruct_id)
    )
    if rtstruct is None:
        return None
    planning = fraction.course.planning_series
    return structures_cache_file(store, planning.content_sha256, rtstruct.content_sha256)

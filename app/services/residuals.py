"""The residuals of a registered fraction for a given correction (the one being signed).

The course's structures come from the worker's cache (:mod:`app.jobs.planning_cache`); the rule
is :func:`app.jobs.residuals.assess`, the one the worker applies to the couch's correction.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from app.db.models import Fraction
from app.db.models_planning import PlanningObject
from app.jobs import planning_cache
from app.jobs.planning_cache import CachedStructures, expected_file, structures_cache_file
from app.jobs.residuals import ResidualAssessment, assess, known_surfaces, structure_surfaces
from app.storage import ImageStore
from registration.couch import CouchCorrection
from registration.dicom_series import read_ct_series
from registration.residuals import ResidualPolicy
from registration.rtstruct import read_structure_set


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


def _cache_path(store: ImageStore, session: Session, fraction: Fraction) -> Path | None:
    rtstruct = (
        None if fraction.rtstruct_id is None else session.get(PlanningObject, fraction.rtstruct_id)
    )
    if rtstruct is None:
        return None
    planning = fraction.course.planning_series
    return structures_cache_file(store, planning.content_sha256, rtstruct.content_sha256)

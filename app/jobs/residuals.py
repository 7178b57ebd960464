"""The residual at the target and the organs at risk for a fraction (the core's rule, applied).

For the correction the couch can apply (in the registration worker, stored with the result)
and for the correction being signed (on the review page and in the fraction JSON): per
structure ``max_mm`` and ``p95_mm`` of ``|M_applied⁻¹·M·p − p|`` over its surface
(:mod:`registration.residuals`), over the 50 mm sphere around the isocentre when the course
has no PTV-type structure. Any warning of the core's rules makes the result untrusted.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.jobs import planning_cache
from app.jobs.planning_cache import CachedStructures
from registration.couch import CouchCorrection
from registration.geometry import LpsPoint
from registration.residuals import (
    ResidualPolicy,
    StructureSurface,
    describe_uncorrected,
    isocenter_sphere_surface,
    residual_warnings,
    structure_residuals,
)
from registration.result import RegistrationResult as EngineResult

_surfaces: OrderedDict[Path, tuple[StructureSurface, ...]] = OrderedDict()
_SURFACES_KEPT = 8


@dataclass(frozen=True)
class ResidualAssessment:
    residuals: list[dict[str, Any]]  #: the fraction JSON's ``residuals`` items
    warnings: tuple[str, ...]  #: the core's rules; any makes the result untrusted


def structure_surfaces(
    cache_path: Path | None, cached: CachedStructures | None
) -> tuple[StructureSurface, ...]:
    """Surface points of every structure that covers a voxel (kept in memory per cache file)."""
    if cached is None:
        return ()
    if cache_path is not None and cache_path in _surfaces:
        _surfaces.move_to_end(cache_path)
        return _surfaces[cache_path]
    found = []
    for structure in cached.structures:
        points = cached.surface_points(structure)
        if points.shape[0]:
            found.append(StructureSurface(structure.name, structure.interpreted_type, points))
    surfaces = tuple(found)
    if cache_path is not None:
        _surfaces[cache_path] = surfaces
        while len(_surfaces) > _SURFACES_KEPT:
            _surfaces.popitem(last=False)
    return surfaces


def known_surfaces(cache_path: Path | None) -> tuple[StructureSurface, ...] | None:
    """The surfaces of ``cache_path`` when this process computed them already, else None."""
    if cache_path is None:
        return ()
    if cache_path in _surfaces:
        _surfaces.move_to_end(cache_path)
        return _surfaces[cache_path]
    return None


def with_isocenter_sphere(
    surfaces: tuple[StructureSurface, ...], isocenter: LpsPoint
) -> tuple[StructureSurface, ...]:
    """The isocentre sphere stands in for the target when no structure is typed PTV."""
    if any(s.interpreted_type == "PTV" for s in surfaces):
        return surfaces
    return (*surfaces, isocenter_sphere_surface(isocenter))


def assess(
    result: EngineResult,
    applied: CouchCorrection,
    surfaces: tuple[StructureSurface, ...],
    policy: ResidualPolicy,
) -> ResidualAssessment:
    """Residuals after the couch applies ``applied`` to the registration of ``result``."""
    iso, position = result.isocenter_lps_mm, result.patient_position
    everywhere = with_isocenter_sphere(surfaces, iso)
    motion = result.planning_to_daily_lps
    residuals = structure_residuals(motion, applied, iso, position, everywhere)
    words = describe_uncorrected(motion, applied, iso, position)
    return ResidualAssessment(
        [_rounded(r.as_dict()) for r in residuals],
        residual_warnings(residuals, words, policy),
    )


def load_cached(cache_path: Path | None) -> CachedStructures | None:
    return None if cache_path is None else planning_cache.load(cache_path)


def _rounded(item: dict[str, str | float]) -> dict[str, Any]:
    return {
        key: round(value, 2) if isinstance(value, float) else value for key, value in item.items()
    }


def judged(
    result: EngineResult,
    assessment: ResidualAssessment,
    planning_warnings: tuple[str, ...] = (),
    untrusted_reasons: tuple[str, ...] = (),
) -> EngineResult:
    """``result`` with the planning warnings and residual warnings added; untrusted when a
    residual warning or an ``untrusted_reasons`` (isocentre at the MVCT centre) applies."""
    reasons = (*untrusted_reasons, *assessment.warnings)
    added = tuple(
        w
        for w in (*planning_warnings, *untrusted_reasons, *assessment.warnings)
        if w not in result.warnings
    )
    return replace(
        result, trusted=result.trusted and not reasons, warnings=(*result.warnings, *added)
    )


def residual_table(residuals: list[dict[str, Any]]) -> list[str]:
    """The CLI's table: one line per structure."""
    if not residuals:
        return []
    width = max(12, *(len(str(r["structure"])) for r in residuals))
    lines = [
        "Left at the structures after the couch's correction (mm):",
        f"  {'structure':<{width}}  {'type':<16} {'max':>7} {'p95':>7}",
    ]
    lines += [
        f"  {r['structure']:<{width}}  {r['type']:<16} {r['max_mm']:7.2f} {r['p95_mm']:7.2f}"
        for r in residuals
    ]
    return lines

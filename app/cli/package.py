"""The planning package of ``mvct-guide register``: RT Structure Set and RT Plan, read once.

With ``--rtstruct``/``--rtplan`` the objects are read and checked against the planning CT once
per process, the structures are rasterised once, and the same package judges every MVCT of a
batch. The isocentre follows the service's rule (``registration.planning_package``): the
request's (``--isocenter``), else the RT Plan's, else the MVCT centre. The MVCT centre is each
MVCT's own, so the rule is applied per MVCT; there the result is never trusted and says why.
Residuals per structure (max, p95 mm; the 50 mm sphere about the isocentre without structures)
are reported for the couch's correction and judged with ``--ptv-margin-mm``/``--prv-margin-mm``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import SimpleITK as sitk

    from registration.geometry import LpsPoint
    from registration.residuals import ResidualPolicy, StructureSurface
    from registration.result import RegistrationResult
    from registration.rtstruct import StructureSet
    from registration.volume import CtVolume


@dataclass(frozen=True)
class CliPackage:
    """The command line's RT objects, the isocentre they give, and the residual rules."""

    structure_set: StructureSet | None
    requested: LpsPoint | None  #: --isocenter
    plan_point: LpsPoint | None  #: the RT Plan's isocentre (chosen once)
    warnings: tuple[str, ...]  #: what checking the package against the planning CT warned
    policy: ResidualPolicy
    surfaces: tuple[StructureSurface, ...]  #: the structures' surfaces, planning LPS mm

    @property
    def isocenter(self) -> LpsPoint | None:
        """The isocentre the engine is given; None: each MVCT's centre (the engine finds it)."""
        return self.requested if self.requested is not None else self.plan_point

    def judge(
        self, result: RegistrationResult, daily: CtVolume
    ) -> tuple[RegistrationResult, tuple[dict[str, Any], ...]]:
        """``result`` with the isocentre rule's and the residuals' warnings, and its residuals."""
        from app.jobs.residuals import assess, judged
        from registration.planning_package import decide_isocenter

        decision = decide_isocenter(
            mvct_centre=_centre(daily), request=self.requested, plan=self.plan_point
        )
        assessment = assess(result, result.couch_correction, self.surfaces, self.policy)
        untrusted = (decision.untrusted_reason,) if decision.untrusted_reason else ()
        warnings = (*self.warnings, *(w for w in decision.warnings if w not in untrusted))
        return judged(result, assessment, warnings, untrusted), tuple(assessment.residuals)

    def planning_region(
        self, args: argparse.Namespace, planning_image: sitk.Image
    ) -> sitk.Image | None:
        """The ``--match-structure`` region plus ``--match-margin-mm`` (planning frame), or None."""
        from registration.rt_raster import planning_region_mask

        if not args.match_structure:
            return None
        if self.structure_set is None:
            raise ValueError("--match-structure needs --rtstruct (the structure is read there)")
        return planning_region_mask(
            self.structure_set,
            args.match_structure,
            planning_image,
            match_margin_mm=args.match_margin_mm,
        )


def read_package(args: argparse.Namespace, planning: CtVolume) -> CliPackage:
    """Read and check ``--rtstruct``/``--rtplan`` against ``planning``; raise on bad input."""
    from app.jobs.planning_cache import build
    from app.jobs.residuals import structure_surfaces
    from registration.geometry import LpsPoint
    from registration.planning_package import CtIdentity, check_planning_package
    from registration.residuals import ResidualPolicy
    from registration.rtplan import plan_isocenter, read_rt_plan
    from registration.rtstruct import read_structure_set

    requested = LpsPoint.parse(args.isocenter) if args.isocenter else None
    structure_set = plan = None
    if args.rtstruct is not None:
        _require_exists(args.rtstruct, "RT Structure Set")
        structure_set = read_structure_set(args.rtstruct)
    if args.rtplan is not None:
        _require_exists(args.rtplan, "RT Plan")
        plan = read_rt_plan(args.rtplan)
    warnings = check_planning_package(CtIdentity.of(planning), structure_set, plan)
    plan_point = None
    if plan is not None:
        several = len(plan.isocenters) > 1 and requested is not None
        plan_point = plan_isocenter(plan, requested if several else None)
    cached = None if structure_set is None else build(structure_set, planning.image)
    return CliPackage(
        structure_set=structure_set,
        requested=requested,
        plan_point=plan_point,
        warnings=tuple(warnings),
        policy=ResidualPolicy(ptv_margin_mm=args.ptv_margin_mm, prv_margin_mm=args.prv_margin_mm),
        surfaces=structure_surfaces(None, cached),
    )


def _centre(daily: CtVolume) -> LpsPoint:
    from app.services.ingest import bounding_box
    from registration.geometry import LpsPoint

    box = bounding_box(daily)
    return LpsPoint(*((low + high) / 2 for low, high in zip(box.min_mm, box.max_mm, strict=True)))


def _require_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise ValueError(f"{what} not found: {path}")

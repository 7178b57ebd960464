"""What runs inside a registration worker process (never in the web process).

A worker imports ``registration.rigid`` (and with it ITK, ~8 s) once when it starts, and keeps an
LRU of prepared planning images keyed by the planning series content hash, so a fraction whose
planning CT was seen before only pays for reading and registering its MVCT. A planning CT not in
this process's LRU is loaded from its prepared file in the data directory
(:mod:`registration.prepared_file`, written by whichever process prepared it first) before it is
prepared from its DICOM files; where it came from is the outcome's ``planning_source``.

Tasks and outcomes are plain picklable data; exceptions never cross the process boundary.
"""

from __future__ import annotations

import os
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

OutcomeKind = Literal["ok", "input_error", "registration_failed", "error"]
#: where a task found its prepared planning CT: this process's memory, the prepared file in the
#: data directory, or nowhere (prepared from the DICOM files); "" when it did not get that far
PlanningSource = Literal["memory", "prepared_file", "dicom", ""]
#: what the worker measures after the rigid match: the anatomy of a patient fraction, the image
#: figures of a QA phantom scan, or nothing
Measure = Literal["anatomy", "qa_phantom", "none"]


@dataclass(frozen=True)
class RegistrationTask:
    job_id: int
    planning_sha256: str
    planning_files: tuple[str, ...]
    mvct_files: tuple[str, ...]
    isocenter_lps_mm: tuple[float, float, float] | None
    dof: int
    mode: str
    #: the course's RT Structure Set file and where its rasterised masks are cached
    rtstruct_file: str | None = None
    structures_cache: str | None = None
    #: the residual warning rules' course settings (mm; serial organ name parts)
    ptv_margin_mm: float = 3.0
    prv_margin_mm: float = 3.0
    serial_oar_names: tuple[str, ...] = ()
    #: warnings of the planning package (isocentre choice), added to the result's
    planning_warnings: tuple[str, ...] = ()
    #: why the result may not be trusted whatever the engine says (isocentre at the MVCT centre)
    untrusted_reasons: tuple[str, ...] = ()
    #: the course's match structure (a ROI name, or PTV) and margin: the planning region
    match_structure: str | None = None
    match_margin_mm: float = 15.0
    measure: Measure = "anatomy"
    #: the planning CT's folder of prepared files (``planning-cache/<sha256>``), None: not kept
    prepared_root: str | None = None


@dataclass(frozen=True)
class TaskOutcome:
    kind: OutcomeKind
    result: dict[str, Any] | None = None
    residuals: tuple[dict[str, Any], ...] = ()
    message: str = ""
    planning_cache_hit: bool = False  #: the planning CT was prepared in this process's memory
    planning_source: PlanningSource = ""
    cached_plannings: tuple[str, ...] = ()
    seconds: float = 0.0
    #: {"anatomy": AnatomyFigures JSON} or {"phantom": QaImageFigures JSON} or {"note": why not}
    figures: dict[str, Any] | None = None
    pid: int = field(default_factory=os.getpid)


_prepared: OrderedDict[str, Any] = OrderedDict()
_cache_size = 4
#: match regions (sitk.Image masks), beside the prepared planning CTs they belong to
_regions: OrderedDict[tuple[str, str, str, float], Any] = OrderedDict()


def initialize(planning_cache_size: int) -> None:
    """Process initializer: pay for the heavy imports once, before the first task."""
    global _cache_size
    _cache_size = planning_cache_size
    import registration.dicom_series
    import registration.rigid  # noqa: F401
    from registration.elastix_run import warm_up as load_itk_and_elastix
    from registration.prepared_file import preparation_key

    load_itk_and_elastix()
    preparation_key()  # hashes the engine's source once


def warm_up() -> int:
    """A tiny no-op through the engine's code path; returns the worker's pid."""
    import numpy as np
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.zeros((4, 4, 4), dtype=np.float32))
    sitk.Cast(image, sitk.sitkFloat32)
    return os.getpid()


@dataclass(frozen=True)
class PreparePlanningTask:
    """Prepare a course's planning CT before its first fraction (at course creation)."""

    planning_sha256: str
    planning_files: tuple[str, ...]
    prepared_root: str | None = None  #: see :attr:`RegistrationTask.prepared_root`


def prepare(task: PreparePlanningTask) -> TaskOutcome:
    """Have the planning CT prepared in this worker's memory and in its prepared file.

    Exactly what the first fraction of a course would otherwise do before registering, so that
    fraction finds it ready in this process (a memory hit) or in the data directory (any other
    process). Idempotent: a planning CT already in memory is only marked recently used, one whose
    file exists is not written again. A file that cannot be written is reported in ``message``
    (the planning CT is still in memory); nothing here raises.
    """
    started = time.perf_counter()
    source: PlanningSource = ""
    try:
        prepared, source = _prepared_planning(
            task.planning_sha256, task.planning_files, task.prepared_root
        )
    except Exception as exc:  # reported, never crashes the worker; the fraction will say why
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return _outcome("error", source, started, message=detail)
    try:
        written = source != "prepared_file" and _save(prepared, task.prepared_root)
    except OSError as exc:  # a full or read-only disk: the other processes prepare it themselves
        return _outcome("ok", source, started, message=f"prepared file not written: {exc}")
    return _outcome("ok", source, started, message="prepared file written" if written else "")


def persist_prepared(planning_sha256: str, prepared_root: str | None) -> bool:
    """Write the prepared file of a planning CT this process holds in memory, when missing.

    Called after a job whose planning CT was prepared from DICOM, once its outcome is recorded
    (nobody waits for it then), so that the other processes load it instead. True: written.
    """
    prepared = _prepared.get(planning_sha256)
    return prepared is not None and _save(prepared, prepared_root)


def _save(prepared: Any, prepared_root: str | None) -> bool:
    from pathlib import Path

    from registration.prepared_file import save_prepared

    return prepared_root is not None and save_prepared(prepared, Path(prepared_root))


def _prepared_planning(
    sha256: str, files: tuple[str, ...], prepared_root: str | None = None
) -> tuple[Any, PlanningSource]:
    """The prepared planning CT for ``sha256`` and where it was found: this process's memory,
    else its prepared file, else read from DICOM and prepared now."""
    from pathlib import Path

    from registration.dicom_series import read_ct_series
    from registration.prepared_file import load_prepared
    from registration.rigid import prepare_planning

    prepared = _prepared.get(sha256)
    if prepared is not None:
        _prepared.move_to_end(sha256)
        return prepared, "memory"
    source: PlanningSource = "prepared_file"
    prepared = None if prepared_root is None else load_prepared(Path(prepared_root))
    if prepared is None:
        source = "dicom"
        prepared = prepare_planning(read_ct_series([_existing(p) for p in files]))
    _ = prepared.itk_levels  # the ITK conversion, paid here rather than by the registration
    _prepared[sha256] = prepared
    while len(_prepared) > _cache_size:
        _prepared.popitem(last=False)
    return prepared, source


def run_registration(task: RegistrationTask) -> TaskOutcome:
    from registration.couch import Dof
    from registration.dicom_series import read_ct_series
    from registration.errors import InputError, RegistrationFailedError
    from registration.geometry import LpsPoint
    from registration.result import Mode, RegistrationOptions
    from registration.rigid import register

    started = time.perf_counter()
    source: PlanningSource = ""
    try:
        prepared, source = _prepared_planning(
            task.planning_sha256, task.planning_files, task.prepared_root
        )
        daily = read_ct_series([_existing(p) for p in task.mvct_files])
        iso = task.isocenter_lps_mm
        options = RegistrationOptions(
            isocenter=None if iso is None else LpsPoint(*iso),
            dof=Dof(task.dof),
            mode=Mode(task.mode),
            planning_region=_planning_region(task, prepared.volume.image),
        )
        result = register(prepared, daily, options)
        result, residuals, cached = _assess(task, prepared.volume.image, result)
        external, ptv = anatomy_masks(cached)
        figures = measure_after_match(
            task.measure, prepared.volume.image, daily.image, result, external=external, ptv=ptv
        )
        return _outcome(
            "ok",
            source,
            started,
            result=result.to_dict(),
            residuals=residuals,
            figures=figures,
        )
    except InputError as exc:
        return _outcome("input_error", source, started, message=str(exc))
    except RegistrationFailedError as exc:
        return _outcome("registration_failed", source, started, message=str(exc))
    except Exception as exc:  # an engine fault: reported, never crashes the worker
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return _outcome("error", source, started, message=detail)


def _planning_region(task: RegistrationTask, planning: Any) -> Any:
    """The course's match region on the planning grid (made once per course and setting)."""
    from registration.errors import PlanningPackageError
    from registration.rt_raster import planning_region_mask
    from registration.rtstruct import read_structure_set

    if not task.match_structure:
        return None
    if task.rtstruct_file is None:
        raise PlanningPackageError(
            f"the course registers on match_structure {task.match_structure!r} but has no RT "
            "Structure Set: send it (PUT /api/v1/courses/{id}/rtstruct) or clear match_structure"
        )
    key = (task.planning_sha256, task.rtstruct_file, task.match_structure, task.match_margin_mm)
    region = _regions.get(key)
    if region is None:
        structure_set = read_structure_set(_existing(task.rtstruct_file))
        region = planning_region_mask(
            structure_set, task.match_structure, planning, match_margin_mm=task.match_margin_mm
        )
        _regions[key] = region
        while len(_regions) > 2 * _cache_size:
            _regions.popitem(last=False)
    else:
        _regions.move_to_end(key)
    return region


def _assess(task: RegistrationTask, planning: Any, result: Any) -> tuple[Any, tuple[Any, ...], Any]:
    """The residuals of the couch's correction, the planning warnings and reasons added, and
    the course's rasterised structures (None without a structure set)."""
    from pathlib import Path

    from app.jobs import planning_cache
    from app.jobs import residuals as residual_report
    from registration.residuals import ResidualPolicy
    from registration.rtstruct import read_structure_set

    cache_path = None if task.structures_cache is None else Path(task.structures_cache)
    cached = None
    if task.rtstruct_file is not None:
        cached = residual_report.load_cached(cache_path)
        if cached is None:
            cached = planning_cache.build(
                read_structure_set(_existing(task.rtstruct_file)), planning
            )
            if cache_path is not None:
                planning_cache.save(cache_path, cached)
    surfaces = residual_report.structure_surfaces(cache_path, cached)
    policy = ResidualPolicy(task.ptv_margin_mm, task.prv_margin_mm, task.serial_oar_names)
    assessment = residual_report.assess(result, result.couch_correction, surfaces, policy)
    result = residual_report.judged(
        result, assessment, task.planning_warnings, task.untrusted_reasons
    )
    return result, tuple(assessment.residuals), cached


def anatomy_masks(cached: Any) -> tuple[Any, Any]:
    """The course's EXTERNAL and PTV masks for the anatomy measurement (planning grid, [k, j, i]
    booleans): the union of the ROIs of that type that cover a voxel; None where there is none."""
    import numpy as np

    if cached is None:
        return None, None
    found: dict[str, Any] = {}
    for structure in cached.structures:
        kind = structure.interpreted_type.upper()
        if kind in ("EXTERNAL", "PTV") and structure.mask.any():
            before = found.get(kind)
            mask = structure.mask
            found[kind] = mask if before is None else np.logical_or(before, mask)
    return found.get("EXTERNAL"), found.get("PTV")


def measure_after_match(
    measure: Measure,
    planning_hu: Any,
    daily_mv: Any,
    result: Any,
    *,
    external: Any = None,
    ptv: Any = None,
) -> dict[str, Any] | None:
    """The anatomy (or QA phantom) figures of a registered MVCT; a failure here is a note, never
    a failed registration (the couch correction stands on its own).

    The body outline is the course's EXTERNAL structure when it has one (else the planning CT's
    threshold body; ``body_source`` says which) and the misfit region its PTV (else the 50 mm
    sphere around the isocentre); both masks on the planning grid (:func:`anatomy_masks`).
    """
    from registration.anatomy import measure_anatomy
    from registration.errors import InputError
    from registration.qa_phantom import measure_phantom_image

    if measure == "none":
        return None
    try:
        if measure == "qa_phantom":
            phantom = measure_phantom_image(daily_mv, result.planning_to_daily_lps)
            return {"phantom": phantom.to_dict()}
        figures = measure_anatomy(
            planning_hu,
            daily_mv,
            result.planning_to_daily_lps,
            external=external,
            ptv=ptv,
            isocenter=result.isocenter_lps_mm,
        )
        return {"anatomy": figures.to_dict()}
    except InputError as exc:
        return {"note": f"not measured: {exc}"}
    except Exception as exc:  # never lose the registration to a measuring fault
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return {"note": f"not measured (internal error): {detail}"}


def _existing(path: str) -> str:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"stored image file {path} is missing from the data directory")
    return path


def _outcome(
    kind: OutcomeKind,
    source: PlanningSource,
    started: float,
    *,
    result: dict[str, Any] | None = None,
    residuals: tuple[dict[str, Any], ...] = (),
    message: str = "",
    figures: dict[str, Any] | None = None,
) -> TaskOutcome:
    return TaskOutcome(
        kind=kind,
        result=result,
        residuals=residuals,
        figures=figures,
        message=message,
        planning_cache_hit=source == "memory",
        planning_source=source,
        cached_plannings=tuple(_prepared.keys()),
        seconds=time.perf_counter() - started,
    )

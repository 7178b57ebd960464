"""What runs inside a registration worker process (never in the web process).

A worker imports ``registration.rigid`` (and with it ITK, ~8 s) once when it starts, and keeps an
LRU of prepared planning images keyed by the planning series content hash, so a fraction whose
planning CT was seen before only pays for reading and registering its MVCT.

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
    measure: Measure = "anatomy"


@dataclass(frozen=True)
class TaskOutcome:
    kind: OutcomeKind
    result: dict[str, Any] | None = None
    message: str = ""
    planning_cache_hit: bool = False
    cached_plannings: tuple[str, ...] = ()
    seconds: float = 0.0
    #: {"anatomy": AnatomyFigures JSON} or {"phantom": QaImageFigures JSON} or {"note": why not}
    figures: dict[str, Any] | None = None
    pid: int = field(default_factory=os.getpid)


_prepared: OrderedDict[str, Any] = OrderedDict()
_cache_size = 4


def initialize(planning_cache_size: int) -> None:
    """Process initializer: pay for the heavy imports once, before the first task."""
    global _cache_size
    _cache_size = planning_cache_size
    import registration.dicom_series
    import registration.rigid  # noqa: F401
    from registration.elastix_run import warm_up as load_itk_and_elastix

    load_itk_and_elastix()


def warm_up() -> int:
    """A tiny no-op through the engine's code path; returns the worker's pid."""
    import numpy as np
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.zeros((4, 4, 4), dtype=np.float32))
    sitk.Cast(image, sitk.sitkFloat32)
    return os.getpid()


def run_registration(task: RegistrationTask) -> TaskOutcome:
    from registration.couch import Dof
    from registration.dicom_series import read_ct_series
    from registration.errors import InputError, RegistrationFailedError
    from registration.geometry import LpsPoint
    from registration.result import Mode, RegistrationOptions
    from registration.rigid import prepare_planning, register

    started = time.perf_counter()
    hit = False
    try:
        prepared = _prepared.get(task.planning_sha256)
        if prepared is not None:
            _prepared.move_to_end(task.planning_sha256)
            hit = True
        else:
            planning = read_ct_series([_existing(p) for p in task.planning_files])
            prepared = prepare_planning(planning)
            _prepared[task.planning_sha256] = prepared
            while len(_prepared) > _cache_size:
                _prepared.popitem(last=False)
        daily = read_ct_series([_existing(p) for p in task.mvct_files])
        iso = task.isocenter_lps_mm
        options = RegistrationOptions(
            isocenter=None if iso is None else LpsPoint(*iso),
            dof=Dof(task.dof),
            mode=Mode(task.mode),
        )
        result = register(prepared, daily, options)
        figures = measure_after_match(task.measure, prepared.volume.image, daily.image, result)
        return _outcome("ok", hit, started, result=result.to_dict(), figures=figures)
    except InputError as exc:
        return _outcome("input_error", hit, started, message=str(exc))
    except RegistrationFailedError as exc:
        return _outcome("registration_failed", hit, started, message=str(exc))
    except Exception as exc:  # an engine fault: reported, never crashes the worker
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return _outcome("error", hit, started, message=detail)


def measure_after_match(
    measure: Measure, planning_hu: Any, daily_mv: Any, result: Any
) -> dict[str, Any] | None:
    """The anatomy (or QA phantom) figures of a registered MVCT; a failure here is a note, never
    a failed registration (the couch correction stands on its own).

    The body outline is the planning CT's threshold body and the misfit region the 50 mm sphere
    around the isocentre: courses carry no structure set yet.
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
            planning_hu, daily_mv, result.planning_to_daily_lps, isocenter=result.isocenter_lps_mm
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
    hit: bool,
    started: float,
    *,
    result: dict[str, Any] | None = None,
    message: str = "",
    figures: dict[str, Any] | None = None,
) -> TaskOutcome:
    return TaskOutcome(
        kind=kind,
        result=result,
        figures=figures,
        message=message,
        planning_cache_hit=hit,
        cached_plannings=tuple(_prepared.keys()),
        seconds=time.perf_counter() - started,
    )

"""One single-resolution elastix run, and the reading of its Euler transform.

elastix maps *fixed* points to *moving* points. Here fixed = the MVCT level image whose geometry
has been moved by the current estimate, moving = the planning CT, so the answer is the residual
``daily → planning`` transform that composes onto the current estimate.

elastix's ``EulerTransform`` parameters are ``(θx, θy, θz, tx, ty, tz)`` in radians and mm about
``CenterOfRotationPoint``: ``T(x) = R·(x − c) + c + t`` with ``R = Rz·Ry·Rx`` when ``ComputeZYX``
is "false" (ITK's default ``Euler3DTransform``: ``R = Rz·Rx·Ry``) — rather than trusting that
reading, :func:`euler_parameters_to_matrix` builds the same ITK transform class elastix uses
(SimpleITK's ``Euler3DTransform``, which wraps ITK's) and tests check it with known motions.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import SimpleITK as sitk

from registration.errors import RegistrationFailedError
from registration.frames import FloatArray
from registration.geometry import RigidTransformLps

PARAMETER_FILE = "rigid_mvct_v1.txt"


@dataclass(frozen=True, slots=True)
class ElastixOutcome:
    daily_to_planning: RigidTransformLps  #: residual transform found by this run
    iterations: int
    seconds: float


@contextlib.contextmanager
def _swig_warnings_silenced() -> Iterator[None]:
    """ITK's SWIG layer emits "builtin type ... has no __module__ attribute" deprecation warnings
    from C++ callbacks; where warnings are errors (``python -W error``, pytest's ``error``
    filter) the resulting exception crashes the interpreter. They are silenced around ITK calls.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="builtin type", category=DeprecationWarning)
        yield


@functools.cache
def _itk() -> Any:
    """Import itk lazily: it costs ~8 s, paid once per process (warm workers pay it at start)."""
    with _swig_warnings_silenced():
        import itk

        _ = itk.ElastixRegistrationMethod  # force the lazy module to load now
        _ = itk.ParameterObject
    return itk


def warm_up() -> None:
    """Load itk and elastix now, so that the first registration does not pay for it."""
    _itk()


@functools.cache
def base_parameter_map(name: str = PARAMETER_FILE) -> dict[str, tuple[str, ...]]:
    """The versioned parameter map in ``registration/params`` as a dict of string tuples."""
    text = resources.files("registration.params").joinpath(name).read_text(encoding="utf-8")
    result: dict[str, tuple[str, ...]] = {}
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if not (line.startswith("(") and line.endswith(")")):
            raise ValueError(f"{name}: cannot read parameter line {raw!r}")
        key, *values = line[1:-1].split()
        result[key] = tuple(v.strip('"') for v in values)
    return result


def to_itk(image: sitk.Image, pixel: type = np.float32) -> Any:
    """A SimpleITK image as an ITK image with the same geometry (copies the pixels once)."""
    itk = _itk()
    with _swig_warnings_silenced():
        return _to_itk(itk, image, pixel)


def _to_itk(itk: Any, image: sitk.Image, pixel: type) -> Any:
    out = itk.GetImageFromArray(
        np.ascontiguousarray(sitk.GetArrayViewFromImage(image), dtype=pixel)
    )
    out.SetOrigin(image.GetOrigin())
    out.SetSpacing(image.GetSpacing())
    out.SetDirection(itk.matrix_from_array(np.array(image.GetDirection()).reshape(3, 3)))
    return out


def run_level(
    fixed: Any,
    moving: Any,
    fixed_mask: Any,
    *,
    center_lps_mm: FloatArray,
    iterations: int,
    samples: int,
    random_seed: int,
    overrides: dict[str, tuple[str, ...]] | None = None,
) -> ElastixOutcome:
    """Run elastix once on ITK images (see module docstring for the direction of the answer)."""
    itk = _itk()
    pmap = dict(base_parameter_map())
    pmap.update(
        {
            "MaximumNumberOfIterations": (str(iterations),),
            "NumberOfSpatialSamples": (str(samples),),
            "CenterOfRotationPoint": tuple(f"{v:.6f}" for v in center_lps_mm),
            "RandomSeed": (str(random_seed),),
        }
    )
    if overrides:
        pmap.update(overrides)
    with _swig_warnings_silenced():
        return _run(itk, pmap, fixed, moving, fixed_mask, iterations)


def _run(
    itk: Any,
    pmap: dict[str, tuple[str, ...]],
    fixed: Any,
    moving: Any,
    fixed_mask: Any,
    iterations: int,
) -> ElastixOutcome:
    params = itk.ParameterObject.New()
    params.AddParameterMap({k: list(v) for k, v in pmap.items()})
    start = time.perf_counter()
    method = itk.ElastixRegistrationMethod.New(
        fixed_image=fixed,
        moving_image=moving,
        parameter_object=params,
        fixed_mask=fixed_mask,
        log_to_console=os.environ.get("MVCT_GUIDE_ELASTIX_LOG") == "1",
    )
    method.SetNumberOfThreads(2)
    try:
        method.UpdateLargestPossibleRegion()
    except RuntimeError as exc:
        raise RegistrationFailedError(
            "the image match failed: the MVCT and the planning CT barely overlap or the MVCT "
            f"holds too little anatomy inside its field of view ({_short(exc)})"
        ) from None
    seconds = time.perf_counter() - start
    tmap = method.GetTransformParameterObject().GetParameterMap(0)
    matrix = euler_parameters_to_matrix(
        [float(v) for v in tmap["TransformParameters"]],
        [float(v) for v in tmap["CenterOfRotationPoint"]],
        compute_zyx=tmap.get("ComputeZYX", ("false",))[0] == "true",
    )
    # ASGD runs every requested iteration; the similarity of the final answer is measured
    # independently by registration.rigid, not read from elastix (itk-elastix does not expose it).
    return ElastixOutcome(RigidTransformLps.from_array(matrix), iterations, seconds)


def euler_parameters_to_matrix(
    parameters: list[float], center_lps_mm: list[float], *, compute_zyx: bool
) -> FloatArray:
    """elastix ``EulerTransform`` parameters → 4×4 homogeneous matrix (fixed → moving)."""
    if len(parameters) != 6 or len(center_lps_mm) != 3:
        raise RegistrationFailedError("elastix returned an unexpected Euler transform")
    t = sitk.Euler3DTransform()
    t.SetComputeZYX(compute_zyx)
    t.SetCenter(center_lps_mm)
    t.SetRotation(*parameters[:3])
    t.SetTranslation(parameters[3:])
    r = np.array(t.GetMatrix()).reshape(3, 3)
    c = np.array(center_lps_mm)
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = c + np.array(parameters[3:]) - r @ c
    return m


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:200] if text else type(exc).__name__


def itk_load_count() -> int:
    """How many times this process has loaded itk and elastix (it is cached: 0, then 1).

    Callers that promise "the load is paid once" (the batch command line, warm workers) read it
    before and after a registration to show that the registration did not pay it.
    """
    return _itk.cache_info().misses

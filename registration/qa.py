"""Daily imaging QA: the correction found against the couch offset applied, image figures against
their baseline, and control charts over days. Pure functions over plain data.

Positioning (AAPM TG-142, Klein et al., Med Phys 36(9):4197–4212, 2009, Table V, daily imaging
checks "positioning/repositioning": ≤ 2 mm, ≤ 1 mm for machines that treat SRS/SBRT):
each morning the phantom is set up at the isocentre, the couch is moved by a known offset, the
MVCT is registered, and the correction found is compared per axis with the correction expected.

* :func:`expected_correction_for_couch_offset` turns the couch offset applied (a couch motion
  in IEC 61217 table axes, translate then rotate about the isocentre, as
  :class:`~registration.couch.CouchCorrection`) into the correction that undoes it, exactly
  (for pure translations it is the negated offset). ``qa_expected_offset`` in the service is
  **the expected correction** (what the registration should report); a console that posts the
  applied couch offset instead must go through this function.
* :func:`evaluate_positioning`: error = found − expected per axis; pass when |error| ≤ the
  tolerance (mm for translations; degrees for rotations — TG-142 sets no angular limit for
  imaging QA, our default 1° is a project choice, the couch-rotation scale of MPPG 9.a).

Image figures (AAPM TG-148, Langen et al., Med Phys 37(9):4817–4853, 2010, recommends MVCT noise,
uniformity and CT-number constancy checks against baseline values set at commissioning):
defaults ±25 HU uniformity, ±30 HU water-like and ±50 HU other insert numbers from baseline,
noise no more than 25 % above baseline — TG-148-style values, *unverified* against the report's
table: set them from commissioning data.

Control charts (individuals chart, Shewhart; in radiotherapy QA: Pawlicki, Whitaker & Boyer,
Med Phys 32(9):2777–2786, 2005): centre line = mean, control limits = mean ± 2.66 × mean moving
range (= ±3σ estimated from day-to-day variation), plus the fixed tolerance lines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from registration.couch import (
    CouchCorrection,
    correction_as_planning_to_daily,
    couch_correction_6dof,
)
from registration.errors import InputError
from registration.frames import PatientPosition
from registration.geometry import LpsPoint
from registration.qa_phantom import QaImageFigures

__all__ = [
    "TG142_SRS_SBRT_TOLERANCE_MM",
    "TG142_TOLERANCE_MM",
    "ControlChart",
    "QaAxisResult",
    "QaImageBaseline",
    "QaImageCheck",
    "QaImageTolerance",
    "QaPositioningResult",
    "QaTolerance",
    "control_chart",
    "evaluate_image",
    "evaluate_positioning",
    "expected_correction_for_couch_offset",
]

TG142_TOLERANCE_MM = 2.0
TG142_SRS_SBRT_TOLERANCE_MM = 1.0
AXES = ("lateral_mm", "longitudinal_mm", "vertical_mm", "pitch_deg", "roll_deg", "yaw_deg")


@dataclass(frozen=True, slots=True)
class QaTolerance:
    """Per-axis positioning tolerance of one machine."""

    translation_mm: float = TG142_TOLERANCE_MM
    rotation_deg: float = 1.0

    def __post_init__(self) -> None:
        for name in ("translation_mm", "rotation_deg"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"{name} = {value!r} must be a positive number")

    @classmethod
    def for_machine(cls, treats_srs_sbrt: bool) -> QaTolerance:
        """TG-142 default: 1 mm for machines that treat SRS/SBRT, 2 mm otherwise."""
        return cls(TG142_SRS_SBRT_TOLERANCE_MM if treats_srs_sbrt else TG142_TOLERANCE_MM)


@dataclass(frozen=True, slots=True)
class QaAxisResult:
    axis: str  #: a CouchCorrection field name, with its unit
    expected: float
    found: float
    tolerance: float
    passed: bool

    @property
    def error(self) -> float:
        return self.found - self.expected


@dataclass(frozen=True, slots=True)
class QaPositioningResult:
    axes: tuple[QaAxisResult, ...]

    @property
    def passed(self) -> bool:
        return all(a.passed for a in self.axes)

    def failed_axes(self) -> tuple[str, ...]:
        return tuple(a.axis for a in self.axes if not a.passed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "axes": [
                {
                    "axis": a.axis,
                    "expected": round(a.expected, 3),
                    "found": round(a.found, 3),
                    "error": round(a.error, 3),
                    "tolerance": a.tolerance,
                    "passed": a.passed,
                }
                for a in self.axes
            ],
        }


def expected_correction_for_couch_offset(
    applied_offset: CouchCorrection, isocenter: LpsPoint, position: PatientPosition
) -> CouchCorrection:
    """The 6-DOF correction that undoes a couch motion ``applied_offset`` (see module docstring).

    The phantom rides on the couch, so its motion is the couch motion; the couch motion is the
    inverse of the anatomy motion that ``applied_offset`` would correct.
    """
    phantom_motion = correction_as_planning_to_daily(applied_offset, isocenter, position).inverse()
    return couch_correction_6dof(phantom_motion, isocenter, position)


def evaluate_positioning(
    found: CouchCorrection, expected: CouchCorrection, tolerance: QaTolerance = QaTolerance()
) -> QaPositioningResult:
    """Per axis: |found − expected| ≤ tolerance (translations mm, rotations degrees)."""
    results = []
    for axis in AXES:
        limit = tolerance.translation_mm if axis.endswith("_mm") else tolerance.rotation_deg
        f, e = float(getattr(found, axis)), float(getattr(expected, axis))
        results.append(QaAxisResult(axis, e, f, limit, abs(f - e) <= limit + 1e-9))
    return QaPositioningResult(tuple(results))


@dataclass(frozen=True, slots=True)
class QaImageBaseline:
    """The figures measured at commissioning (or the mean of the first days)."""

    noise_hu: float
    uniformity_hu: float
    inserts: tuple[tuple[str, float], ...]

    @classmethod
    def from_figures(cls, days: Sequence[QaImageFigures]) -> QaImageBaseline:
        """The mean of several days' figures (all with the same inserts)."""
        if not days:
            raise InputError("a QA baseline needs at least one day's figures")
        names = [n for n, _ in days[0].inserts]
        return cls(
            float(np.mean([d.noise_hu for d in days])),
            float(np.mean([d.uniformity_hu for d in days])),
            tuple((n, float(np.mean([d.insert(n) for d in days]))) for n in names),
        )


@dataclass(frozen=True, slots=True)
class QaImageTolerance:
    """Allowed deviation from baseline (defaults and their source: module docstring)."""

    uniformity_hu: float = 25.0
    water_like_hu: float = 30.0  #: inserts whose baseline is within ±150 of water
    other_insert_hu: float = 50.0
    noise_increase_percent: float = 25.0


@dataclass(frozen=True, slots=True)
class QaImageCheck:
    figure: str  #: "noise_hu", "uniformity_hu" or "insert:<name>"
    value: float
    baseline: float
    limit: float  #: allowed |value − baseline| (noise: allowed increase)
    passed: bool


def evaluate_image(
    figures: QaImageFigures,
    baseline: QaImageBaseline,
    tolerance: QaImageTolerance = QaImageTolerance(),
) -> tuple[QaImageCheck, ...]:
    """Each image figure against its baseline."""
    noise_limit = baseline.noise_hu * tolerance.noise_increase_percent / 100.0
    checks = [
        QaImageCheck(
            "noise_hu",
            figures.noise_hu,
            baseline.noise_hu,
            noise_limit,
            figures.noise_hu - baseline.noise_hu <= noise_limit,
        ),
        QaImageCheck(
            "uniformity_hu",
            figures.uniformity_hu,
            baseline.uniformity_hu,
            tolerance.uniformity_hu,
            abs(figures.uniformity_hu - baseline.uniformity_hu) <= tolerance.uniformity_hu,
        ),
    ]
    for name, base in baseline.inserts:
        value = figures.insert(name)
        limit = tolerance.water_like_hu if abs(base) <= 150 else tolerance.other_insert_hu
        checks.append(
            QaImageCheck(f"insert:{name}", value, base, limit, abs(value - base) <= limit)
        )
    return tuple(checks)


@dataclass(frozen=True, slots=True)
class ControlChart:
    """An individuals control chart of one axis over days (module docstring)."""

    values: tuple[float, ...]
    mean: float
    upper_control_limit: float
    lower_control_limit: float
    upper_tolerance: float
    lower_tolerance: float
    out_of_control: tuple[int, ...]  #: indices outside the control limits
    out_of_tolerance: tuple[int, ...]  #: indices outside the tolerance lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "values": [round(v, 3) for v in self.values],
            "mean": round(self.mean, 3),
            "upper_control_limit": round(self.upper_control_limit, 3),
            "lower_control_limit": round(self.lower_control_limit, 3),
            "upper_tolerance": self.upper_tolerance,
            "lower_tolerance": self.lower_tolerance,
            "out_of_control": list(self.out_of_control),
            "out_of_tolerance": list(self.out_of_tolerance),
        }


def control_chart(values: Sequence[float], tolerance: float, target: float = 0.0) -> ControlChart:
    """Individuals chart of daily ``values`` (e.g. the error found − expected on one axis).

    Tolerance lines at ``target ± tolerance``; control limits at mean ± 2.66 × mean moving range
    (one value: the limits collapse on it).
    """
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0 or not np.all(np.isfinite(data)):
        raise InputError("a control chart needs at least one finite value")
    mean = float(data.mean())
    spread = 2.66 * float(np.mean(np.abs(np.diff(data)))) if data.size > 1 else 0.0
    ucl, lcl = mean + spread, mean - spread
    return ControlChart(
        values=tuple(float(v) for v in data),
        mean=mean,
        upper_control_limit=ucl,
        lower_control_limit=lcl,
        upper_tolerance=target + tolerance,
        lower_tolerance=target - tolerance,
        out_of_control=tuple(int(i) for i in np.flatnonzero((data > ucl) | (data < lcl))),
        out_of_tolerance=tuple(
            int(i) for i in np.flatnonzero(np.abs(data - target) > tolerance + 1e-9)
        ),
    )

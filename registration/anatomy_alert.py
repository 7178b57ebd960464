"""The anatomy-change alert: a pure rule over a course's :class:`AnatomyFigures`.

``evaluate_anatomy_alert(course, settings)`` judges the **last** fraction of ``course`` (figures in
fraction order, the first fractions being the course's baseline) and answers an
:class:`AnatomyAlert`: "anatomy changed: consider re-planning" and why. It is advice for a
re-planning review. It never touches the registration's ``trusted``: the rigid match can be right
while the anatomy has changed, and nothing here takes or returns a registration result.

Rules (each a course setting, :class:`AnatomyAlertSettings`; an alert when any one holds)
----------------------------------------------------------------------------------------
``surface``  \\|mean signed body-outline distance\\| ≥ ``surface_change_mm`` (default 5 mm);
``area``     \\|cross-sectional area change over the measured slices\\| ≥ ``area_change_percent``
             (default 10 %);
``misfit``   target-region misfit − mean misfit of the first ``baseline_fractions`` (3) fractions
             ≥ ``misfit_increase`` (default 0.02); judged from fraction ``baseline_fractions + 1``;
``trend``    over the last ``trend_fractions`` (5) fractions the mean outline distance moved
             steadily one way (no step back by more than ``trend_step_tolerance_mm``, 0.5 mm) by
             ``trend_change_mm`` (3 mm) or more along its least-squares line.

Where the defaults come from — and what is a project choice
-----------------------------------------------------------
No guideline sets a number; clinics use local triggers. What the defaults rest on:

* Weight loss and tumour shrinkage during head-and-neck radiotherapy are large enough to change
  the dose: Barker et al., Int J Radiat Oncol Biol Phys 59(4):960–970, 2004 (daily in-room CT:
  GTV volume −0.2 cm³/day, median total loss 69 %); Hansen et al., Int J Radiat Oncol Biol Phys
  64(2):355–362, 2006 (re-planning for weight loss or tumour response: without it the PTV dose
  fell and the cord and brainstem doses rose). Review of triggers: Schwartz & Dong, J Oncol
  2011:690595 ("Adaptive radiation therapy for head and neck cancer — can an old goal evolve
  into a new standard?").
* Magnitudes: Barata et al., Turk J Oncol 38(4), 2023 (doi 10.5505/tjo.2023.3938, 11
  nasopharynx patients): a change of the widest neck separation of 1.21 cm predicted the need
  to adapt the plan (sensitivity 93 %, specificity 88 %). A separation is two surfaces, so about
  6 mm per surface; our 5 mm mean inward (or outward) change per surface is slightly stricter.
  The 10 % area change is the "about 10 % of the neck's cross-section" of the project's domain
  notes, *unverified* against a primary source; a 10 % body-weight loss is the usual clinical
  flag for the same review (many centres; the Makita et al. 2024 series defines "severe weight
  loss" as 10 %), and for a roughly cylindrical neck a uniform outline change of 5 mm on a 12 cm
  neck is ≈ 16 % of the area, so 10 % fires earlier than 5 mm on a neck and later on a trunk.
* ``misfit_increase`` and the trend rule are *project choices*, calibrated on simulated MVCTs
  of the real thorax CT (``bench/bench_anatomy.py``): over 20 ordinary fractions (noise 25–60
  HU, cupping 0–60 HU, 4/6 mm slices, set-up errors ±8 mm/±2°, two couches) the misfit moved
  at most +0.0032 from its baseline; a tumour shrinking from 20 to 12 mm radius raised it by
  +0.20 in a 30 mm PTV (+0.04 in the 50 mm sphere). The trend rule fires on a steady drift of
  0.75 mm per fraction or more (3 mm over the 4 intervals of a 5-fraction window). Neither is
  validated on patients: review them with local data before clinical use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum, unique
from typing import Any

import numpy as np

from registration.anatomy import AnatomyFigures
from registration.errors import InputError

__all__ = [
    "AnatomyAlert",
    "AnatomyAlertReason",
    "AnatomyAlertSettings",
    "evaluate_anatomy_alert",
]


@unique
class AnatomyAlertReason(StrEnum):
    SURFACE = "surface"
    AREA = "area"
    MISFIT = "misfit"
    TREND = "trend"


@dataclass(frozen=True, slots=True)
class AnatomyAlertSettings:
    """Alert levels of one course (defaults and their sources: module docstring)."""

    surface_change_mm: float = 5.0
    area_change_percent: float = 10.0
    misfit_increase: float = 0.02
    baseline_fractions: int = 3
    trend_fractions: int = 5
    trend_change_mm: float = 3.0
    trend_step_tolerance_mm: float = 0.5

    def __post_init__(self) -> None:
        for name in (
            "surface_change_mm",
            "area_change_percent",
            "misfit_increase",
            "trend_change_mm",
            "trend_step_tolerance_mm",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"{name} = {value!r} must be a positive number")
        if self.baseline_fractions < 1:
            raise InputError(f"baseline_fractions = {self.baseline_fractions} must be at least 1")
        if self.trend_fractions < 3:
            raise InputError(f"trend_fractions = {self.trend_fractions} must be at least 3")

    def to_dict(self) -> dict[str, float | int]:
        return {
            "surface_change_mm": self.surface_change_mm,
            "area_change_percent": self.area_change_percent,
            "misfit_increase": self.misfit_increase,
            "baseline_fractions": self.baseline_fractions,
            "trend_fractions": self.trend_fractions,
            "trend_change_mm": self.trend_change_mm,
            "trend_step_tolerance_mm": self.trend_step_tolerance_mm,
        }


@dataclass(frozen=True, slots=True)
class AnatomyAlert:
    """The verdict on one fraction. ``messages`` are for the reviewer, one per reason."""

    alert: bool
    reasons: tuple[AnatomyAlertReason, ...]
    messages: tuple[str, ...]
    misfit_baseline: float | None  #: mean misfit of the baseline fractions (None: not yet)
    misfit_increase: float | None  #: this fraction's misfit minus the baseline
    #: least-squares change of the mean outline distance over the trend window, steady or not
    #: (None: fewer fractions than the window)
    trend_change_mm: float | None

    def to_dict(self) -> dict[str, Any]:
        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 5)

        return {
            "alert": self.alert,
            "reasons": [reason.value for reason in self.reasons],
            "messages": list(self.messages),
            "misfit_baseline": r(self.misfit_baseline),
            "misfit_increase": r(self.misfit_increase),
            "trend_change_mm": r(self.trend_change_mm),
        }


def evaluate_anatomy_alert(
    course: Sequence[AnatomyFigures],
    settings: AnatomyAlertSettings = AnatomyAlertSettings(),  # frozen: a shared default is safe
) -> AnatomyAlert:
    """Judge the last fraction of ``course`` (fraction order); see the module docstring."""
    if not course:
        raise InputError("evaluate_anatomy_alert needs at least the fraction to judge")
    current = course[-1]
    reasons: list[AnatomyAlertReason] = []
    messages: list[str] = []

    if abs(current.mean_surface_mm) >= settings.surface_change_mm:
        way = "inward (smaller)" if current.mean_surface_mm < 0 else "outward (larger)"
        reasons.append(AnatomyAlertReason.SURFACE)
        messages.append(
            f"body outline moved {abs(current.mean_surface_mm):.1f} mm {way} on average "
            f"(level {settings.surface_change_mm:g} mm): consider re-planning"
        )
    if abs(current.area_change_percent) >= settings.area_change_percent:
        reasons.append(AnatomyAlertReason.AREA)
        messages.append(
            f"body cross-section changed by {current.area_change_percent:+.1f} % "
            f"(level {settings.area_change_percent:g} %): consider re-planning"
        )

    baseline, increase = _misfit_change(course, settings.baseline_fractions)
    if increase is not None and increase >= settings.misfit_increase:
        reasons.append(AnatomyAlertReason.MISFIT)
        messages.append(
            f"the anatomy in the {current.misfit_region} region fits the plan worse than in the "
            f"first {settings.baseline_fractions} fractions (misfit +{increase:.3f}, level "
            f"{settings.misfit_increase:g}): consider re-planning"
        )

    trend, steady = _trend_change_mm(course, settings)
    if trend is not None and steady and abs(trend) >= settings.trend_change_mm:
        way = "inward" if trend < 0 else "outward"
        reasons.append(AnatomyAlertReason.TREND)
        messages.append(
            f"body outline moving steadily {way}: {abs(trend):.1f} mm over the last "
            f"{settings.trend_fractions} fractions (level {settings.trend_change_mm:g} mm)"
        )
    return AnatomyAlert(
        alert=bool(reasons),
        reasons=tuple(reasons),
        messages=tuple(messages),
        misfit_baseline=baseline,
        misfit_increase=increase,
        trend_change_mm=trend,
    )


def _misfit_change(
    course: Sequence[AnatomyFigures], n_baseline: int
) -> tuple[float | None, float | None]:
    """Baseline misfit (mean of the first fractions) and the last fraction's increase over it."""
    if len(course) <= n_baseline:
        return None, None  # the judged fraction is itself part of the baseline
    values = [f.misfit for f in course[:n_baseline] if f.misfit is not None]
    if len(values) < n_baseline:
        return None, None
    baseline = float(np.mean(values))
    current = course[-1].misfit
    return baseline, None if current is None else current - baseline


def _trend_change_mm(
    course: Sequence[AnatomyFigures], settings: AnatomyAlertSettings
) -> tuple[float | None, bool]:
    """Least-squares change of the mean outline distance over the window, and whether every
    step went the same way (within the tolerance)."""
    n = settings.trend_fractions
    if len(course) < n:
        return None, False
    values = np.array([f.mean_surface_mm for f in course[-n:]])
    slope = float(np.polyfit(np.arange(n, dtype=float), values, 1)[0])
    change = slope * (n - 1)
    steps = np.diff(values) * np.sign(slope)  # positive: a step in the trend's direction
    return change, not bool(np.any(steps < -settings.trend_step_tolerance_mm))

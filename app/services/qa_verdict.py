"""One daily-QA scan judged (:class:`QaDay`), and the control chart of each axis.

Verdicts of a QA scan: ``passed``; ``failed`` (an axis or an image figure out of tolerance — the
worklist of the machine shows a banner until a physicist acknowledges it); ``needs review`` (the
registration was not trusted: a phantom match at 4–6 mm slices is often marked "not converged"
although correct; a physicist looks at the images — it is not a failed day; scan with fine
pitch); ``no offset`` (enter the offset applied); ``awaiting registration`` / ``registration
failed``. Image figures (noise, uniformity, insert numbers) are compared with the course's
baseline: the one the physicist set, else the mean of the first :data:`BASELINE_SCANS` measured
scans (those scans are the baseline and are not judged on their figures).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from app.db.models import Fraction, JobStatus
from app.db.models_anatomy import QaCourse
from app.services.anatomy import AckView
from registration.couch import CouchCorrection
from registration.qa import (
    AXES,
    ControlChart,
    QaImageBaseline,
    QaImageCheck,
    QaPositioningResult,
    QaTolerance,
    control_chart,
    evaluate_image,
    evaluate_positioning,
    expected_correction_for_couch_offset,
)
from registration.qa_phantom import QaImageFigures

BASELINE_SCANS = 3
PASSED, FAILED, NEEDS_REVIEW = "passed", "failed", "needs review"
NO_OFFSET, WAITING, REG_FAILED = "no offset", "awaiting registration", "registration failed"


@dataclass(frozen=True)
class QaDay:
    """One QA scan of a machine, judged."""

    fraction_id: int
    machine: str
    scanned_at: datetime
    verdict: str
    applied_offset: CouchCorrection | None
    positioning: QaPositioningResult | None
    image: tuple[QaImageCheck, ...] = ()
    image_figures: QaImageFigures | None = None
    trusted: bool | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)
    acknowledged: AckView | None = None

    @property
    def needs_acknowledgement(self) -> bool:
        return self.verdict == FAILED and self.acknowledged is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "fraction_id": self.fraction_id,
            "machine": self.machine,
            "scanned_at": self.scanned_at.isoformat(timespec="seconds"),
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "qa_expected_offset": None
            if self.applied_offset is None
            else self.applied_offset.as_dict(),
            "positioning": None if self.positioning is None else self.positioning.to_dict(),
            "image_figures": None if self.image_figures is None else self.image_figures.to_dict(),
            "image_checks": [
                {
                    "figure": c.figure,
                    "value": round(c.value, 2),
                    "baseline": round(c.baseline, 2),
                    "limit": round(c.limit, 2),
                    "passed": c.passed,
                }
                for c in self.image
            ],
            "trusted": self.trusted,
            "acknowledged": None if self.acknowledged is None else self.acknowledged.to_dict(),
        }


def tolerance_of(qa: QaCourse) -> QaTolerance:
    return QaTolerance(qa.translation_tolerance_mm, qa.rotation_tolerance_deg)


def judge(
    fraction: Fraction,
    qa: QaCourse,
    applied: CouchCorrection | None,
    figures: QaImageFigures | None,
    baseline: QaImageBaseline | None,
    acknowledged: AckView | None = None,
) -> QaDay:
    """One QA scan's verdict (module docstring)."""
    day = QaDay(
        fraction_id=fraction.id,
        machine=qa.machine,
        scanned_at=fraction.created_at,
        verdict=WAITING,
        applied_offset=applied,
        positioning=None,
        image_figures=figures,
        acknowledged=acknowledged,
    )
    if fraction.job.status != JobStatus.DONE.value or fraction.result is None:
        if fraction.job.status == JobStatus.FAILED.value:
            return replace(day, verdict=REG_FAILED, reasons=(fraction.job.error or "",))
        return day
    result = fraction.result.engine_result
    checks = () if figures is None or baseline is None else evaluate_image(figures, baseline)
    day = replace(day, image=checks, trusted=result.trusted)
    if applied is None:
        return replace(
            day, verdict=NO_OFFSET, reasons=("enter the couch offset applied to the phantom",)
        )
    expected = expected_correction_for_couch_offset(
        applied, result.isocenter_lps_mm, result.patient_position
    )
    positioning = evaluate_positioning(result.couch_correction_6dof, expected, tolerance_of(qa))
    reasons = [
        f"{a.axis}: found {a.found:+.2f}, expected {a.expected:+.2f} (error {a.error:+.2f}, "
        f"tolerance ±{a.tolerance:g})"
        for a in positioning.axes
        if not a.passed
    ]
    reasons += [
        f"{c.figure} {c.value:.1f} against baseline {c.baseline:.1f} (limit {c.limit:.1f})"
        for c in checks
        if not c.passed
    ]
    if not result.trusted:
        verdict = NEEDS_REVIEW
        reasons.insert(0, "the registration is not trusted: check the match on the images")
    else:
        verdict = PASSED if not reasons else FAILED
    return replace(day, verdict=verdict, positioning=positioning, reasons=tuple(reasons))


def charts(days: Sequence[QaDay], qa: QaCourse) -> dict[str, tuple[list[QaDay], ControlChart]]:
    """Per axis, the control chart of the error (found − expected) over the judged days."""
    judged = [d for d in days if d.positioning is not None]
    tolerance = tolerance_of(qa)
    result = {}
    for index, axis in enumerate(AXES):
        if not judged:
            break
        limit = tolerance.translation_mm if axis.endswith("_mm") else tolerance.rotation_deg
        values = [d.positioning.axes[index].error for d in judged]  # type: ignore[union-attr]
        result[axis] = (judged, control_chart(values, limit))
    return result


def figures_from_dict(data: dict[str, Any]) -> QaImageFigures:
    return QaImageFigures(
        noise_hu=float(data["noise_hu"]),
        uniformity_hu=float(data["uniformity_hu"]),
        inserts=tuple((str(k), float(v)) for k, v in data["inserts"].items()),
    )


def image_baseline(qa: QaCourse, measured: list[QaImageFigures]) -> QaImageBaseline | None:
    """The course's image baseline: the one the physicist set, else the mean of the first
    :data:`BASELINE_SCANS` measured scans (None: fewer than that so far)."""
    if qa.baseline is not None:
        figures = figures_from_dict(qa.baseline)
        return QaImageBaseline(figures.noise_hu, figures.uniformity_hu, figures.inserts)
    if len(measured) < BASELINE_SCANS:
        return None
    return QaImageBaseline.from_figures(measured[:BASELINE_SCANS])

"""Checking a planning package (CT + RT Structure Set + RT Plan) and choosing what to use.

Rules (pure functions; the service maps the errors to 409/422 with the same words):

* **Same patient**: the structure set's and the plan's ``PatientID`` equal the CT's. An empty
  PatientID on either side is a warning, a different one a
  :class:`~registration.errors.ReferenceMismatchError`.
* **Structure set → CT**: its referenced Frame of Reference UID, and every ROI's, is the CT's;
  when it lists referenced series, the CT's series is among them (``require_series_match``).
* **Plan → structure set or CT**: a plan whose ``FrameOfReferenceUID`` differs from the CT's is
  refused (its isocentre is in another frame); a plan without one must reference the structure
  set. A plan referencing a different structure set in the CT's frame is accepted with a warning.
* **Choosing** among several structure sets or plans: the one the caller names (SOP Instance UID
  or label); else the latest (``StructureSetDate/Time``, ``RTPlanDate/Time``) with
  ``ApprovalStatus`` APPROVED; with none approved, the caller must name one. A single candidate
  is used even when not approved, with a warning.
* **Isocentre**: the request's explicit isocentre wins (a warning when it is more than 1 mm from
  the plan's, or from the course's when there is no plan), then the RT Plan's, then the
  course's, then the MVCT centre — which never gives a trusted result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum, unique
from typing import Generic, Protocol, TypeVar

import numpy as np

from registration.errors import PlanningSelectionError, ReferenceMismatchError
from registration.geometry import LpsPoint
from registration.rtplan import RtPlan, format_point_mm
from registration.rtstruct import StructureSet
from registration.volume import CtVolume

__all__ = [
    "REQUEST_ISOCENTER_TOLERANCE_MM",
    "CtIdentity",
    "IsocenterDecision",
    "IsocenterSource",
    "Selection",
    "check_planning_package",
    "check_rt_plan",
    "check_structure_set",
    "decide_isocenter",
    "select_rt_plan",
    "select_structure_set",
]

REQUEST_ISOCENTER_TOLERANCE_MM = 1.0


@dataclass(frozen=True, slots=True)
class CtIdentity:
    """What the checks need to know about the planning CT."""

    patient_id: str
    frame_of_reference_uid: str
    series_instance_uid: str

    @classmethod
    def of(cls, volume: CtVolume) -> CtIdentity:
        return cls(volume.patient_id, volume.frame_of_reference_uid, volume.series_instance_uid)


def check_structure_set(
    ct: CtIdentity, structure_set: StructureSet, *, require_series_match: bool = True
) -> tuple[str, ...]:
    """Raise if ``structure_set`` does not belong to the CT; return warnings."""
    what = f"RT Structure Set {structure_set.sop_instance_uid}"
    warnings = list(_check_patient(ct, structure_set.patient_id, what))
    if structure_set.frame_of_reference_uid != ct.frame_of_reference_uid:
        raise ReferenceMismatchError(
            f"{what} references Frame of Reference "
            f"{structure_set.frame_of_reference_uid or '(none)'} but the planning CT's is "
            f"{ct.frame_of_reference_uid}; its contours would be placed in the wrong frame. "
            "Send the structure set drawn on this CT.",
            ct.frame_of_reference_uid,
            structure_set.frame_of_reference_uid,
        )
    for roi in structure_set.structures:
        if roi.frame_of_reference_uid and roi.frame_of_reference_uid != ct.frame_of_reference_uid:
            raise ReferenceMismatchError(
                f"{what}: ROI {roi.name!r} is in Frame of Reference {roi.frame_of_reference_uid} "
                f"but the planning CT's is {ct.frame_of_reference_uid}; structures drawn on "
                "another image cannot be placed on this CT.",
                ct.frame_of_reference_uid,
                roi.frame_of_reference_uid,
            )
    series = structure_set.referenced_series_uids
    if not series:
        warnings.append(
            f"{what} names no referenced CT series; only its Frame of Reference was checked"
        )
    elif ct.series_instance_uid not in series and require_series_match:
        raise ReferenceMismatchError(
            f"{what} was drawn on series {', '.join(series)} but the planning CT is series "
            f"{ct.series_instance_uid}. Send the structure set drawn on this CT.",
            ct.series_instance_uid,
            series[0],
        )
    return tuple(warnings)


def check_rt_plan(
    ct: CtIdentity, plan: RtPlan, structure_set: StructureSet | None = None
) -> tuple[str, ...]:
    """Raise if ``plan`` does not belong to the CT (and structure set); return warnings."""
    what = f"RT Plan {plan.sop_instance_uid}"
    warnings = list(_check_patient(ct, plan.patient_id, what))
    references_set = (
        structure_set is not None
        and structure_set.sop_instance_uid in plan.referenced_structure_set_uids
    )
    if plan.frame_of_reference_uid:
        if plan.frame_of_reference_uid != ct.frame_of_reference_uid:
            raise ReferenceMismatchError(
                f"{what} is in Frame of Reference {plan.frame_of_reference_uid} but the planning "
                f"CT's is {ct.frame_of_reference_uid}; its isocentre would be in the wrong frame.",
                ct.frame_of_reference_uid,
                plan.frame_of_reference_uid,
            )
    elif not references_set:
        expected = structure_set.sop_instance_uid if structure_set else "(no structure set)"
        found = ", ".join(plan.referenced_structure_set_uids) or "(none)"
        raise ReferenceMismatchError(
            f"{what} gives no Frame of Reference and references structure set {found}, not "
            f"{expected}; it cannot be tied to the planning CT.",
            expected,
            found,
        )
    if structure_set is not None and not references_set:
        warnings.append(
            f"{what} references structure set "
            f"{', '.join(plan.referenced_structure_set_uids) or '(none)'}, not "
            f"{structure_set.sop_instance_uid}; accepted because both share the CT's frame"
        )
    return tuple(warnings)


def check_planning_package(
    ct: CtIdentity, structure_set: StructureSet | None, plan: RtPlan | None
) -> tuple[str, ...]:
    """Both checks above; the warnings of both."""
    warnings: tuple[str, ...] = ()
    if structure_set is not None:
        warnings += check_structure_set(ct, structure_set)
    if plan is not None:
        warnings += check_rt_plan(ct, plan, structure_set)
    return warnings


class _RtObject(Protocol):
    @property
    def sop_instance_uid(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def date_time(self) -> datetime | None: ...
    @property
    def approval_status(self) -> str: ...


T = TypeVar("T", bound=_RtObject)


@dataclass(frozen=True, slots=True)
class Selection(Generic[T]):
    """The object chosen and the warnings about the choice."""

    chosen: T
    warnings: tuple[str, ...] = ()


def select_structure_set(
    candidates: Sequence[StructureSet], named: str | None = None
) -> Selection[StructureSet]:
    """The structure set to use (see the module docstring)."""
    return _select(candidates, named, "RT Structure Set")


def select_rt_plan(candidates: Sequence[RtPlan], named: str | None = None) -> Selection[RtPlan]:
    """The RT Plan to use (see the module docstring)."""
    return _select(candidates, named, "RT Plan")


def _select(candidates: Sequence[T], named: str | None, what: str) -> Selection[T]:
    choices = tuple(
        f"{c.sop_instance_uid} ({c.label or 'no label'}, {c.approval_status or 'no status'})"
        for c in candidates
    )
    if not candidates:
        raise PlanningSelectionError(f"no {what} was given to choose from", ())
    if named is not None:
        hits = [c for c in candidates if named.strip() in (c.sop_instance_uid, c.label)]
        if len(hits) != 1:
            raise PlanningSelectionError(
                f"{what} {named!r} matches {len(hits)} of the candidates "
                f"{'; '.join(choices)}; name one by its SOP Instance UID.",
                choices,
            )
        return Selection(hits[0], _approval_warning(hits[0], what))
    if len(candidates) == 1:
        return Selection(candidates[0], _approval_warning(candidates[0], what))
    approved = [c for c in candidates if c.approval_status == "APPROVED"]
    if not approved:
        raise PlanningSelectionError(
            f"{len(candidates)} {what}s were given and none is APPROVED: {'; '.join(choices)}. "
            "Name the one to use.",
            choices,
        )
    latest = max(approved, key=lambda c: c.date_time or datetime.min)
    ties = [c for c in approved if c.date_time == latest.date_time]
    if len(ties) > 1:
        raise PlanningSelectionError(
            f"{len(ties)} approved {what}s share the latest date "
            f"{latest.date_time or '(none)'}: {'; '.join(choices)}. Name the one to use.",
            choices,
        )
    return Selection(
        latest,
        (
            f"{len(candidates)} {what}s were given; the latest approved, "
            f"{latest.sop_instance_uid}, is used",
        ),
    )


def _approval_warning(candidate: _RtObject, what: str) -> tuple[str, ...]:
    if candidate.approval_status == "APPROVED":
        return ()
    return (
        f"{what} {candidate.sop_instance_uid} is "
        f"{candidate.approval_status or 'without approval status'}, not APPROVED",
    )


def _check_patient(ct: CtIdentity, patient_id: str, what: str) -> tuple[str, ...]:
    if not patient_id or not ct.patient_id:
        return (f"{what} or the planning CT has no PatientID; the patient could not be checked",)
    if patient_id.strip() != ct.patient_id.strip():
        raise ReferenceMismatchError(
            f"{what} belongs to patient {patient_id!r} but the planning CT to {ct.patient_id!r}.",
            ct.patient_id,
            patient_id,
        )
    return ()


@unique
class IsocenterSource(StrEnum):
    """Where a fraction's isocentre came from (the API's ``isocenter_source``)."""

    RTPLAN = "rtplan"
    REQUEST = "request"
    COURSE = "course"
    MVCT_CENTRE = "mvct_centre"


@dataclass(frozen=True, slots=True)
class IsocenterDecision:
    """The isocentre used, where it came from, warnings, and why it blocks ``trusted``."""

    point: LpsPoint
    source: IsocenterSource
    warnings: tuple[str, ...] = ()
    untrusted_reason: str | None = None


def decide_isocenter(
    *,
    mvct_centre: LpsPoint,
    request: LpsPoint | None = None,
    plan: LpsPoint | None = None,
    course: LpsPoint | None = None,
    tolerance_mm: float = REQUEST_ISOCENTER_TOLERANCE_MM,
) -> IsocenterDecision:
    """Apply the isocentre rule: request, then RT Plan (already chosen), course, MVCT centre."""
    if request is not None:
        reference = (plan, "the RT Plan's") if plan is not None else (course, "the course's")
        warnings: tuple[str, ...] = ()
        if reference[0] is not None:
            distance_mm = float(np.linalg.norm(request.as_array() - reference[0].as_array()))
            if distance_mm > tolerance_mm:
                warnings = (
                    f"the requested isocentre ({format_point_mm(request)}) mm is "
                    f"{distance_mm:.1f} mm from {reference[1]} ({format_point_mm(reference[0])}) "
                    "mm; the requested one is used",
                )
        return IsocenterDecision(request, IsocenterSource.REQUEST, warnings)
    if plan is not None:
        return IsocenterDecision(plan, IsocenterSource.RTPLAN)
    if course is not None:
        return IsocenterDecision(course, IsocenterSource.COURSE)
    reason = (
        "no isocentre was given (no RT Plan, none in the request or the course): the correction "
        f"is evaluated at the MVCT centre ({format_point_mm(mvct_centre)}) mm, which may be far "
        "from the target"
    )
    return IsocenterDecision(mvct_centre, IsocenterSource.MVCT_CENTRE, (reason,), reason)

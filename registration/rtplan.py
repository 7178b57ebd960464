"""Reading an RT Plan (SOP Class 1.2.840.10008.5.1.4.1.1.481.5): isocentres, machine, approval.

The isocentre of a beam is ``BeamSequence[*].ControlPointSequence[0].IsocenterPosition``: the
first control point must carry it (PS3.3 C.8.8.14.5); later control points repeat it only when
it changes, which a static-isocentre plan never does. It is in the DICOM patient frame (LPS, mm)
of the plan's Frame of Reference. Beams whose isocentres lie within
:data:`ISOCENTER_TOLERANCE_MM` (0.1 mm) of each other share one isocentre; the first beam's
value (in beam order) is the one kept. Ion plans (``IonBeamSequence``) are read the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from registration.errors import PlanningPackageError, PlanningSelectionError
from registration.geometry import LpsPoint
from registration.rt_dataset import RT_PLAN_STORAGE, RtSource, dicom_datetime, load_rt_dataset, text

__all__ = [
    "ISOCENTER_TOLERANCE_MM",
    "PlanIsocenter",
    "RtPlan",
    "format_point_mm",
    "plan_isocenter",
    "read_rt_plan",
]

#: Isocentres closer than this (mm) are the same isocentre.
ISOCENTER_TOLERANCE_MM = 0.1


@dataclass(frozen=True, slots=True)
class PlanIsocenter:
    """One distinct isocentre of a plan and the beams (``BeamNumber``) that use it."""

    position: LpsPoint
    beam_numbers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RtPlan:
    """An RT Plan as the core uses it.

    ``referenced_structure_set_uids`` are the SOP Instance UIDs of
    ``ReferencedStructureSetSequence``; ``machine_names`` the distinct ``TreatmentMachineName``
    values of the beams, in beam order; ``date_time`` is ``RTPlanDate/Time``.
    """

    sop_instance_uid: str
    patient_id: str
    patient_name: str
    label: str
    name: str
    date_time: datetime | None
    approval_status: str
    frame_of_reference_uid: str
    referenced_structure_set_uids: tuple[str, ...]
    machine_names: tuple[str, ...]
    isocenters: tuple[PlanIsocenter, ...]

    @property
    def machine_name(self) -> str:
        """The treatment machine, or ``""`` when the beams name none or several."""
        return self.machine_names[0] if len(self.machine_names) == 1 else ""


def read_rt_plan(source: RtSource) -> RtPlan:
    """Read an RT Plan from a pydicom ``Dataset``, a path, bytes or a binary file."""
    ds = load_rt_dataset(source, RT_PLAN_STORAGE, "RT Plan")
    beams = list(ds.get("BeamSequence", [])) or list(ds.get("IonBeamSequence", []))
    machines: list[str] = []
    isocenters: list[PlanIsocenter] = []
    for beam in beams:
        machine = text(beam, "TreatmentMachineName")
        if machine and machine not in machines:
            machines.append(machine)
        points = beam.get("ControlPointSequence", [])
        if not points or "IsocenterPosition" not in points[0]:
            continue
        values = np.asarray([float(v) for v in points[0].IsocenterPosition], dtype=np.float64)
        if values.shape != (3,) or not np.all(np.isfinite(values)):
            raise PlanningPackageError(
                f"RT Plan {text(ds, 'SOPInstanceUID')} beam {text(beam, 'BeamNumber')}: "
                f"IsocenterPosition {points[0].IsocenterPosition!r} is not three finite numbers."
            )
        _add_isocenter(isocenters, LpsPoint.from_array(values), int(beam.get("BeamNumber", 0)))
    references = tuple(
        text(item, "ReferencedSOPInstanceUID")
        for item in ds.get("ReferencedStructureSetSequence", [])
    )
    return RtPlan(
        sop_instance_uid=text(ds, "SOPInstanceUID"),
        patient_id=text(ds, "PatientID"),
        patient_name=text(ds, "PatientName"),
        label=text(ds, "RTPlanLabel"),
        name=text(ds, "RTPlanName"),
        date_time=dicom_datetime(text(ds, "RTPlanDate"), text(ds, "RTPlanTime")),
        approval_status=text(ds, "ApprovalStatus").upper(),
        frame_of_reference_uid=text(ds, "FrameOfReferenceUID"),
        referenced_structure_set_uids=tuple(r for r in references if r),
        machine_names=tuple(machines),
        isocenters=tuple(isocenters),
    )


def format_point_mm(point: LpsPoint) -> str:
    """``"x, y, z"`` with 0.1 mm resolution, for messages and choices."""
    return f"{point.x_mm:.1f}, {point.y_mm:.1f}, {point.z_mm:.1f}"


def plan_isocenter(plan: RtPlan, chosen: LpsPoint | None = None) -> LpsPoint:
    """The plan's one isocentre; with several, the one ``chosen`` names (within 0.1 mm).

    Raises :class:`~registration.errors.PlanningSelectionError` listing the isocentres when the
    plan has several and none (or no matching one) was chosen, and
    :class:`~registration.errors.PlanningPackageError` when the plan has none.
    """
    if not plan.isocenters:
        raise PlanningPackageError(
            f"RT Plan {plan.sop_instance_uid} gives no IsocenterPosition on any beam's first "
            "control point; give the isocentre explicitly."
        )
    choices = tuple(format_point_mm(i.position) for i in plan.isocenters)
    if chosen is not None:
        for candidate in plan.isocenters:
            if _distance_mm(candidate.position, chosen) <= ISOCENTER_TOLERANCE_MM:
                return candidate.position
        raise PlanningSelectionError(
            f"isocentre ({format_point_mm(chosen)}) mm is not one of RT Plan "
            f"{plan.sop_instance_uid}'s isocentres: {'; '.join(f'({c})' for c in choices)} mm "
            "LPS. Choose one of them.",
            choices,
        )
    if len(plan.isocenters) > 1:
        raise PlanningSelectionError(
            f"RT Plan {plan.sop_instance_uid} has {len(choices)} isocentres "
            f"{'; '.join(f'({c})' for c in choices)} mm LPS; the course must choose one.",
            choices,
        )
    return plan.isocenters[0].position


def _distance_mm(a: LpsPoint, b: LpsPoint) -> float:
    return float(np.linalg.norm(a.as_array() - b.as_array()))


def _add_isocenter(found: list[PlanIsocenter], point: LpsPoint, beam_number: int) -> None:
    for n, existing in enumerate(found):
        if _distance_mm(existing.position, point) <= ISOCENTER_TOLERANCE_MM:
            found[n] = PlanIsocenter(existing.position, (*existing.beam_numbers, beam_number))
            return
    found.append(PlanIsocenter(point, (beam_number,)))

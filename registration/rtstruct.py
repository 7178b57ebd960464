"""Reading an RT Structure Set (SOP Class 1.2.840.10008.5.1.4.1.1.481.3) into frozen types.

Conventions
-----------
* Contour points are in the DICOM patient frame (LPS, mm), exactly as ``ContourData`` stores them
  (x, y, z triplets); a contour is a closed planar polygon, its last point joined to its first.
* Several contours of one ROI on one slice combine by the **even-odd rule**: a point is inside when
  a ray from it crosses the contours an odd number of times, which is how holes (and islands in
  holes) are drawn. ``CLOSED_PLANAR_XOR`` contours mean the same.
* ``POINT`` and ``OPEN_PLANAR``/``OPEN_NONPLANAR`` contours enclose no volume: they are skipped and
  listed in :attr:`StructureSet.warnings`.
* ``interpreted_type`` is ``RTROIInterpretedType`` (EXTERNAL, PTV, CTV, GTV, ORGAN, AVOIDANCE, …)
  upper-cased, ``""`` when the structure set gives none. ``"PTV"`` as a *match structure* name
  means the union of every PTV-type ROI (:meth:`StructureSet.resolve`).

Rasterising onto the planning grid is in :mod:`registration.rt_raster`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from registration.errors import PlanningPackageError
from registration.frames import FloatArray
from registration.rt_dataset import (
    RT_STRUCTURE_SET_STORAGE,
    RtSource,
    dicom_datetime,
    load_rt_dataset,
    text,
)

__all__ = [
    "PTV_UNION",
    "PlanarContour",
    "Structure",
    "StructureSet",
    "read_structure_set",
]

#: The match-structure name meaning "the union of all PTV-type ROIs".
PTV_UNION = "PTV"
_CLOSED = {"CLOSED_PLANAR", "CLOSED_PLANAR_XOR"}
_CONTOUR_DATA = Tag(0x3006, 0x0050)


@dataclass(frozen=True, eq=False)
class PlanarContour:
    """One closed planar contour: ``points_lps_mm`` is an (N, 3) array, N ≥ 3, LPS mm."""

    points_lps_mm: FloatArray
    referenced_sop_instance_uid: str = ""

    def __post_init__(self) -> None:
        points = np.array(self.points_lps_mm, dtype=np.float64)  # a copy: frozen, theirs not
        if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] < 3:
            raise PlanningPackageError(
                f"a closed contour needs at least 3 points of (x, y, z); got shape {points.shape}"
            )
        if not np.all(np.isfinite(points)):
            raise PlanningPackageError("a contour holds a non-finite coordinate")
        points.setflags(write=False)
        object.__setattr__(self, "points_lps_mm", points)


@dataclass(frozen=True, eq=False)
class Structure:
    """One ROI of a structure set with its closed contours (possibly none)."""

    roi_number: int
    name: str
    interpreted_type: str
    color_rgb: tuple[int, int, int] | None
    contours: tuple[PlanarContour, ...]
    frame_of_reference_uid: str = ""

    @property
    def is_ptv(self) -> bool:
        return self.interpreted_type == "PTV"

    def contours_by_z(self) -> Mapping[float, tuple[PlanarContour, ...]]:
        """Contours grouped per axial slice, keyed by their mean z (mm, rounded to 0.01 mm)."""
        groups: dict[float, list[PlanarContour]] = {}
        for contour in self.contours:
            z_mm = round(float(np.mean(contour.points_lps_mm[:, 2])), 2)
            groups.setdefault(z_mm, []).append(contour)
        return {z: tuple(groups[z]) for z in sorted(groups)}

    def point_count(self) -> int:
        return sum(c.points_lps_mm.shape[0] for c in self.contours)


@dataclass(frozen=True, eq=False)
class StructureSet:
    """An RT Structure Set as the core uses it.

    ``referenced_series_uids`` are the image series its contours were drawn on
    (``RTReferencedSeriesSequence``); ``frame_of_reference_uid`` is the first (normally the only)
    ``ReferencedFrameOfReferenceSequence`` item's UID. ``date_time`` is
    ``StructureSetDate/Time``.
    """

    sop_instance_uid: str
    patient_id: str
    patient_name: str
    label: str
    date_time: datetime | None
    approval_status: str
    frame_of_reference_uid: str
    referenced_study_uid: str
    referenced_series_uids: tuple[str, ...]
    structures: tuple[Structure, ...]
    warnings: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.structures)

    def structure(self, name: str) -> Structure:
        """The ROI called ``name`` (exact, else the only case-insensitive match)."""
        for s in self.structures:
            if s.name == name:
                return s
        folded = [s for s in self.structures if s.name.casefold() == name.strip().casefold()]
        if len(folded) == 1:
            return folded[0]
        raise PlanningPackageError(
            f"structure {name!r} is not in structure set {self.sop_instance_uid}; "
            f"its ROIs are {', '.join(repr(n) for n in self.names) or 'none'}."
        )

    def ptv_structures(self) -> tuple[Structure, ...]:
        return tuple(s for s in self.structures if s.is_ptv)

    def resolve(self, match_structure: str) -> tuple[Structure, ...]:
        """The ROIs a match-structure name stands for: one ROI, or every PTV for ``"PTV"``.

        A ROI literally named ``PTV`` wins over the union only when no ROI has type PTV.
        """
        if match_structure.strip().upper() == PTV_UNION:
            ptvs = self.ptv_structures()
            if ptvs:
                return ptvs
            if any(s.name.strip().upper() == PTV_UNION for s in self.structures):
                return (self.structure(match_structure),)
            kinds = ", ".join(f"{s.name}={s.interpreted_type or '?'}" for s in self.structures)
            raise PlanningPackageError(
                f"match structure 'PTV' means every ROI of type PTV, and structure set "
                f"{self.sop_instance_uid} has none (types: {kinds}); name the target ROI instead."
            )
        return (self.structure(match_structure),)


def read_structure_set(source: RtSource) -> StructureSet:
    """Read an RT Structure Set from a pydicom ``Dataset``, a path, bytes or a binary file."""
    ds = load_rt_dataset(source, RT_STRUCTURE_SET_STORAGE, "RT Structure Set")
    warnings: list[str] = []
    frame_uid, study_uid, series_uids = _references(ds)
    colours: dict[int, tuple[int, int, int] | None] = {}
    contours: dict[int, tuple[PlanarContour, ...]] = {}
    for item in ds.get("ROIContourSequence", []):
        number = int(item.ReferencedROINumber)
        colours[number] = _colour(item.get("ROIDisplayColor"))
        contours[number] = _closed_contours(item, number, warnings)
    types = {
        int(o.ReferencedROINumber): text(o, "RTROIInterpretedType").upper()
        for o in ds.get("RTROIObservationsSequence", [])
    }
    structures = []
    for roi in ds.get("StructureSetROISequence", []):
        number = int(roi.ROINumber)
        structures.append(
            Structure(
                roi_number=number,
                name=text(roi, "ROIName"),
                interpreted_type=types.get(number, ""),
                color_rgb=colours.get(number),
                contours=contours.get(number, ()),
                frame_of_reference_uid=text(roi, "ReferencedFrameOfReferenceUID") or frame_uid,
            )
        )
    return StructureSet(
        sop_instance_uid=text(ds, "SOPInstanceUID"),
        patient_id=text(ds, "PatientID"),
        patient_name=text(ds, "PatientName"),
        label=text(ds, "StructureSetLabel"),
        date_time=dicom_datetime(text(ds, "StructureSetDate"), text(ds, "StructureSetTime")),
        approval_status=text(ds, "ApprovalStatus").upper(),
        frame_of_reference_uid=frame_uid,
        referenced_study_uid=study_uid,
        referenced_series_uids=series_uids,
        structures=tuple(structures),
        warnings=tuple(warnings),
    )


def _references(ds: Dataset) -> tuple[str, str, tuple[str, ...]]:
    frames = ds.get("ReferencedFrameOfReferenceSequence", [])
    if not frames:
        raise PlanningPackageError(
            f"RT Structure Set {text(ds, 'SOPInstanceUID')} has no "
            "ReferencedFrameOfReferenceSequence, so its contours cannot be placed on a CT."
        )
    frame = frames[0]
    study_uid = ""
    series: list[str] = []
    for study in frame.get("RTReferencedStudySequence", []):
        study_uid = study_uid or text(study, "ReferencedSOPInstanceUID")
        series.extend(
            text(s, "SeriesInstanceUID") for s in study.get("RTReferencedSeriesSequence", [])
        )
    return text(frame, "FrameOfReferenceUID"), study_uid, tuple(s for s in series if s)


def _colour(value: object) -> tuple[int, int, int] | None:
    if value is None:
        return None
    try:
        r, g, b = (int(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    return (r, g, b)


def _closed_contours(item: Dataset, number: int, warnings: list[str]) -> tuple[PlanarContour, ...]:
    result = []
    skipped: dict[str, int] = {}
    for contour in item.get("ContourSequence", []):
        kind = text(contour, "ContourGeometricType").upper()
        if kind not in _CLOSED:
            skipped[kind or "untyped"] = skipped.get(kind or "untyped", 0) + 1
            continue
        points = _contour_points(contour)
        if points.shape[0] < 3:
            key = "closed (fewer than 3 points)"
            skipped[key] = skipped.get(key, 0) + 1
            continue
        images = contour.get("ContourImageSequence", [])
        uid = text(images[0], "ReferencedSOPInstanceUID") if images else ""
        result.append(PlanarContour(points, uid))
    for kind, count in skipped.items():
        warnings.append(
            f"ROI {number}: {count} {kind} contour(s) enclose no volume and were skipped"
        )
    return tuple(result)


def _contour_points(contour: Dataset) -> FloatArray:
    """ContourData as an (N, 3) array, parsed in one numpy call (no per-point Python)."""
    element = contour.get_item(_CONTOUR_DATA)
    if element is None:
        return np.empty((0, 3))
    if isinstance(element, RawDataElement):
        raw = element.value or b""
        values = np.array(raw.split(b"\\"), dtype=np.float64) if raw.strip() else np.empty(0)
    else:
        values = np.asarray(element.value, dtype=np.float64).ravel()
    if values.size % 3:
        raise PlanningPackageError(
            f"ContourData holds {values.size} numbers, not a multiple of 3 (x, y, z triplets)."
        )
    return values.reshape(-1, 3)

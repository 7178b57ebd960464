"""An archive of courses, sorted into courses: CT series grouped by patient and Frame of Reference.

The rule that decides which CT is the planning CT (it never guesses silently):

1. Within one patient (PatientID) and one Frame of Reference (FrameOfReferenceUID), a CT series
   whose SeriesDescription matches the MVCT pattern (default ``CTrue``, what TomoTherapy writes;
   case-insensitive regular expression) is an MVCT; every other CT series is a planning
   candidate.
2. With a planning pattern given, only the candidates whose SeriesDescription matches it remain;
   if none matches, the course is refused.
3. One candidate left: it is the planning CT. None: the course is refused ("no planning CT").
   Several: the one covering the longest extent along its slices is chosen and every row of the
   course says so in ``planning_choice`` (with the others' UIDs); if two are equally long (within
   one slice) the course is refused.

An RT Plan in the same patient and Frame of Reference with one isocentre gives the isocentre;
otherwise the engine's default (the centre of the MVCT) is used and the row says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MVCT_PATTERN = "CTrue"
_RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"


@dataclass(frozen=True)
class ArchiveSeries:
    """One CT series of the archive, from its headers (no pixels read)."""

    series_instance_uid: str
    description: str
    date_time: str
    files: tuple[str, ...]
    extent_mm: float
    slice_mm: float


@dataclass(frozen=True)
class Course:
    """One patient and Frame of Reference: its planning CT (or why there is none) and MVCTs."""

    patient_id: str
    frame_of_reference_uid: str
    planning: ArchiveSeries | None
    mvcts: tuple[ArchiveSeries, ...]
    planning_choice: str = ""
    refusal: str = ""
    isocenter_lps_mm: tuple[float, float, float] | None = None
    isocenter_source: str = "centre of the MVCT (no RT Plan with one isocentre)"


@dataclass
class _Group:
    series: dict[str, list[Any]] = field(default_factory=dict)
    plans: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class ArchiveScan:
    courses: tuple[Course, ...]
    skipped_files: tuple[str, ...]


def scan_archive(
    archive: Path, mvct_pattern: str = DEFAULT_MVCT_PATTERN, planning_pattern: str | None = None
) -> ArchiveScan:
    """Read every header of ``archive`` (a folder, searched recursively, or a .zip) into courses.

    Files that are not DICOM, and DICOM objects other than CT images and RT Plans, are skipped
    and listed in ``skipped_files``.
    """
    from pydicom import dcmread

    from registration.dicom_files import open_dicom_files

    mvct_re = re.compile(mvct_pattern, re.IGNORECASE)
    planning_re = None if planning_pattern is None else re.compile(planning_pattern, re.I)
    groups: dict[tuple[str, str], _Group] = {}
    skipped: list[str] = []
    with open_dicom_files(archive) as files:
        for file in files:
            try:
                ds = dcmread(file.open(), stop_before_pixels=True)
            except Exception:  # pydicom raises many types for a non-DICOM or damaged file
                skipped.append(file.name)
                continue
            key = (str(ds.get("PatientID", "")).strip(), _text(ds, "FrameOfReferenceUID"))
            if _text(ds, "SOPClassUID") == _RT_PLAN:
                groups.setdefault(key, _Group()).plans.append(ds)
            elif _text(ds, "Modality").upper() == "CT" and "ImagePositionPatient" in ds:
                group = groups.setdefault(key, _Group())
                group.series.setdefault(_text(ds, "SeriesInstanceUID"), []).append(
                    (file.location, ds)
                )
            else:
                skipped.append(file.name)
    courses = tuple(
        _course(pid, frame, group, mvct_re, planning_re)
        for (pid, frame), group in sorted(groups.items())
        if group.series
    )
    return ArchiveScan(courses, tuple(skipped))


def _course(
    patient_id: str,
    frame: str,
    group: _Group,
    mvct_re: re.Pattern[str],
    planning_re: re.Pattern[str] | None,
) -> Course:
    series = [_series(uid, items) for uid, items in group.series.items()]
    mvcts = tuple(sorted((s for s in series if mvct_re.search(s.description)), key=_order))
    candidates = [s for s in series if not mvct_re.search(s.description)]
    if planning_re is not None:
        candidates = [s for s in candidates if planning_re.search(s.description)]
    planning, choice, refusal = _choose_planning(candidates, planning_re is not None)
    course = Course(patient_id, frame, planning, mvcts, choice, refusal)
    return _with_isocenter(course, group.plans)


def _choose_planning(
    candidates: list[ArchiveSeries], patterned: bool
) -> tuple[ArchiveSeries | None, str, str]:
    if not candidates:
        why = "no CT series matches the planning pattern" if patterned else "no planning CT"
        return None, "", f"{why} in this patient and Frame of Reference"
    if len(candidates) == 1:
        return candidates[0], "", ""
    ranked = sorted(candidates, key=lambda s: -s.extent_mm)
    best, second = ranked[0], ranked[1]
    if best.extent_mm - second.extent_mm < max(best.slice_mm, second.slice_mm, 0.5):
        uids = ", ".join(s.series_instance_uid for s in ranked)
        return None, "", f"{len(ranked)} planning CT candidates of equal length ({uids}); name one"
    others = ", ".join(s.series_instance_uid for s in ranked[1:])
    choice = (
        f"chosen as the longest ({best.extent_mm:.0f} mm) of {len(ranked)} candidate CT series; "
        f"not chosen: {others}"
    )
    return best, choice, ""


def _with_isocenter(course: Course, plans: list[Any]) -> Course:
    from dataclasses import replace

    from registration.errors import RegistrationError
    from registration.rtplan import plan_isocenter, read_rt_plan

    if len(plans) != 1:
        if plans:
            return replace(course, isocenter_source=f"centre of the MVCT ({len(plans)} RT Plans)")
        return course
    try:
        plan = read_rt_plan(plans[0])
        iso = plan_isocenter(plan)
    except RegistrationError as exc:
        return replace(course, isocenter_source=f"centre of the MVCT (RT Plan: {exc})")
    return replace(
        course,
        isocenter_lps_mm=(iso.x_mm, iso.y_mm, iso.z_mm),
        isocenter_source=f"RT Plan {plan.sop_instance_uid}",
    )


def _series(uid: str, items: list[tuple[str, Any]]) -> ArchiveSeries:
    first = items[0][1]
    orientation = np.asarray([float(v) for v in first.ImageOrientationPatient], dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    along = sorted(
        float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])) for _, ds in items
    )
    gaps = np.diff(along)
    slice_mm = float(np.median(gaps)) if len(gaps) else 0.0
    return ArchiveSeries(
        series_instance_uid=uid,
        description=_text(first, "SeriesDescription"),
        date_time=_text(first, "SeriesDate") + _text(first, "SeriesTime"),
        files=tuple(location for location, _ in items),
        extent_mm=along[-1] - along[0],
        slice_mm=slice_mm,
    )


def _order(series: ArchiveSeries) -> tuple[str, str]:
    return series.date_time, series.series_instance_uid


def _text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()

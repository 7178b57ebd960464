"""A course's planning package: RT Structure Set and RT Plan in, checked, stored, chosen.

The rules are the core's (:mod:`registration.planning_package`); this module reads the saved
files, maps the core's refusals to 409 (a UID mismatch: the message names both UIDs) and 422
(unreadable, ambiguous), stores the accepted file content-addressed in the image store beside the
CT (one file per store entry), adds its ``planning_objects`` row and audits it. A course uses the
newest RT Structure Set and RT Plan attached to it.

The isocentre of a fraction (:func:`decide_fraction_isocenter`): the request's, else the plan's
(the course's chosen one when the plan has several; 422 listing them when it has not chosen), else
the course's, else the MVCT centre — which never gives a trusted result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import repository as repo
from app.db.models import Course, ImageSeries
from app.db.models_planning import PlanningKind, PlanningObject
from app.errors import ConflictError, UnprocessableError
from app.services.ingest import ParsedSeries, UploadedFiles
from app.storage import ImageStore, series_content_hash
from registration.errors import InputError, PlanningSelectionError, ReferenceMismatchError
from registration.geometry import LpsPoint
from registration.planning_package import (
    CtIdentity,
    IsocenterDecision,
    check_rt_plan,
    check_structure_set,
    decide_isocenter,
    select_rt_plan,
    select_structure_set,
)
from registration.rt_dataset import RT_PLAN_STORAGE, RT_STRUCTURE_SET_STORAGE
from registration.rtplan import RtPlan, plan_isocenter, read_rt_plan
from registration.rtstruct import StructureSet, read_structure_set

_SOP_CLASS_KIND = {
    RT_STRUCTURE_SET_STORAGE: PlanningKind.RTSTRUCT,
    RT_PLAN_STORAGE: PlanningKind.RTPLAN,
}
_WHAT = {PlanningKind.RTSTRUCT: "RT Structure Set", PlanningKind.RTPLAN: "RT Plan"}


@dataclass(frozen=True, eq=False)
class RtFile:
    """One accepted RT object: its saved file and what the core read from it."""

    kind: PlanningKind
    path: Path
    file_sha256: str
    structure_set: StructureSet | None = None
    plan: RtPlan | None = None

    @property
    def content_sha256(self) -> str:
        """The image-store key of this one-file entry."""
        return series_content_hash([self.file_sha256])

    @property
    def sop_instance_uid(self) -> str:
        obj = self.structure_set or self.plan
        assert obj is not None
        return obj.sop_instance_uid


@dataclass(frozen=True, eq=False)
class PackageIn:
    """The RT objects of one request (either may be absent)."""

    structure_set: RtFile | None = None
    plan: RtFile | None = None

    def __bool__(self) -> bool:
        return self.structure_set is not None or self.plan is not None


def rt_kind_of(path: Path) -> PlanningKind | None:
    """RT Structure Set or RT Plan by the file's SOP Class UID; None for anything else."""
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except (InvalidDicomError, OSError, ValueError, AttributeError):
        return None
    return _SOP_CLASS_KIND.get(str(getattr(ds, "SOPClassUID", "")))


def split_rt_files(
    uploaded: UploadedFiles,
) -> tuple[UploadedFiles, dict[PlanningKind, list[tuple[Path, str]]]]:
    """The CT files of a zip/folder upload, and the RT objects that came with them."""
    rest: list[tuple[Path, str]] = []
    found: dict[PlanningKind, list[tuple[Path, str]]] = {}
    for path, digest in uploaded.files:
        kind = rt_kind_of(path)
        if kind is None:
            rest.append((path, digest))
        else:
            found.setdefault(kind, []).append((path, digest))
    if not found:
        return uploaded, {}
    return UploadedFiles(uploaded.label, tuple(rest)), found


def read_rt_files(
    kind: PlanningKind, files: Sequence[tuple[Path, str]], named: str | None = None
) -> RtFile:
    """Read every file as ``kind`` (422 naming the bad one) and choose one (the core's rule)."""
    what = _WHAT[kind]
    read: list[RtFile] = []
    for path, digest in files:
        try:
            if kind is PlanningKind.RTSTRUCT:
                read.append(RtFile(kind, path, digest, structure_set=read_structure_set(path)))
            else:
                read.append(RtFile(kind, path, digest, plan=read_rt_plan(path)))
        except InputError as exc:
            raise UnprocessableError(f"{what} {path.name}: {exc}") from None
    by_uid = {r.sop_instance_uid: r for r in read}
    try:
        if kind is PlanningKind.RTSTRUCT:
            sets = [r.structure_set for r in read if r.structure_set]
            uid = select_structure_set(sets, named).chosen.sop_instance_uid
        else:
            uid = select_rt_plan([r.plan for r in read if r.plan], named).chosen.sop_instance_uid
    except PlanningSelectionError as exc:
        raise UnprocessableError(str(exc)) from None
    return by_uid[uid]


def ct_identity(series: ParsedSeries | ImageSeries) -> CtIdentity:
    return CtIdentity(series.patient_id, series.frame_of_reference_uid, series.series_instance_uid)


def check_package(
    ct: CtIdentity, structure_set: StructureSet | None, plan: RtPlan | None
) -> tuple[str, ...]:
    """The core's checks; a UID mismatch is a 409 naming both, anything else unusable a 422."""
    warnings: tuple[str, ...] = ()
    try:
        if structure_set is not None:
            warnings += check_structure_set(ct, structure_set)
        if plan is not None:
            warnings += check_rt_plan(ct, plan, structure_set)
            if not plan.isocenters:
                plan_isocenter(plan)  # raises, naming the plan
    except ReferenceMismatchError as exc:
        raise ConflictError(f"{exc} (expected {exc.expected}, found {exc.found})") from None
    except InputError as exc:
        raise UnprocessableError(str(exc)) from None
    return warnings


def current(session: Session, course_id: int, kind: PlanningKind) -> PlanningObject | None:
    """The RT object of ``kind`` the course uses now (the newest attached)."""
    return session.scalar(
        select(PlanningObject)
        .where(PlanningObject.course_id == course_id, PlanningObject.kind == kind.value)
        .order_by(PlanningObject.id.desc())
        .limit(1)
    )


def stored_file(store: ImageStore, obj: PlanningObject) -> Path:
    files = store.series_files(obj.content_sha256)
    if len(files) != 1:
        raise UnprocessableError(
            f"the stored {_WHAT[obj.kind]} {obj.sop_instance_uid} is missing from the image store"
        )
    return files[0]


def load_structure_set(store: ImageStore, obj: PlanningObject) -> StructureSet:
    return read_structure_set(stored_file(store, obj))


def load_plan(store: ImageStore, obj: PlanningObject) -> RtPlan:
    return read_rt_plan(stored_file(store, obj))


def attach(
    session: Session,
    store: ImageStore,
    course: Course,
    rt: RtFile,
    warnings: Sequence[str],
    placed: list[str],
    actor: str,
) -> PlanningObject:
    """Store ``rt`` and make it the course's current one (audited); the caller holds the store
    lock of ``rt.content_sha256`` and commits (and removes ``placed`` if it does not)."""
    existing = current(session, course.id, rt.kind)
    if existing is not None and existing.content_sha256 == rt.content_sha256:
        return existing
    _, created = store.place_series([(rt.path, rt.file_sha256)], rt.content_sha256)
    if created:
        placed.append(rt.content_sha256)
    obj = PlanningObject(
        course_id=course.id,
        kind=rt.kind,
        content_sha256=rt.content_sha256,
        sop_instance_uid=rt.sop_instance_uid[:64],
        frame_of_reference_uid=_frame_of_reference(rt)[:64],
        label=_label(rt)[:64],
        approval_status=_approval(rt)[:16],
        summary=_summary(rt),
        warnings=list(warnings),
        created_by=actor,
    )
    session.add(obj)
    session.flush()
    repo.record_audit(
        session,
        actor=actor,
        action=f"{rt.kind.value}_attached",
        entity="course",
        entity_id=course.id,
        detail={
            "sop_instance_uid": obj.sop_instance_uid,
            "content_sha256": obj.content_sha256,
            "approval_status": obj.approval_status,
            "replaces": None if existing is None else existing.sop_instance_uid,
            "warnings": list(warnings),
        },
    )
    return obj


def _frame_of_reference(rt: RtFile) -> str:
    if rt.structure_set is not None:
        return rt.structure_set.frame_of_reference_uid
    assert rt.plan is not None
    return rt.plan.frame_of_reference_uid


def _label(rt: RtFile) -> str:
    obj = rt.structure_set or rt.plan
    assert obj is not None
    return obj.label


def _approval(rt: RtFile) -> str:
    obj = rt.structure_set or rt.plan
    assert obj is not None
    return obj.approval_status


def _summary(rt: RtFile) -> dict[str, object]:
    if rt.structure_set is not None:
        return {
            "structures": [
                {
                    "name": s.name,
                    "type": s.interpreted_type,
                    "color": list(s.color_rgb) if s.color_rgb else None,
                }
                for s in rt.structure_set.structures
            ]
        }
    assert rt.plan is not None
    return {"isocenters_lps_mm": [list(i.position.as_array()) for i in rt.plan.isocenters]}


def plan_isocenters(obj: PlanningObject | None) -> list[LpsPoint]:
    if obj is None:
        return []
    return [LpsPoint.from_array(p) for p in obj.summary.get("isocenters_lps_mm", [])]


def decide_fraction_isocenter(
    course: Course,
    plan: PlanningObject | None,
    request: LpsPoint | None,
    mvct: ImageSeries,
) -> IsocenterDecision:
    """The isocentre rule for one fraction (see the module docstring); 422 listing the plan's
    isocentres when it has several and neither the request nor the course chose one."""
    points = plan_isocenters(plan)
    plan_point: LpsPoint | None = None
    if len(points) == 1:
        plan_point = points[0]
    elif len(points) > 1 and request is not None:  # the request wins; warn against the nearest
        plan_point = min(points, key=lambda p: _distance_mm(p, request))
    elif len(points) > 1:
        plan_point = _choose(points, course.isocenter, plan)
    centre = LpsPoint(
        (mvct.min_x_mm + mvct.max_x_mm) / 2,
        (mvct.min_y_mm + mvct.max_y_mm) / 2,
        (mvct.min_z_mm + mvct.max_z_mm) / 2,
    )
    return decide_isocenter(
        mvct_centre=centre, request=request, plan=plan_point, course=course.isocenter
    )


def _choose(
    points: list[LpsPoint], chosen: LpsPoint | None, plan: PlanningObject | None
) -> LpsPoint:
    listed = "; ".join(f"({p.x_mm:.1f}, {p.y_mm:.1f}, {p.z_mm:.1f})" for p in points)
    uid = plan.sop_instance_uid if plan is not None else ""
    if chosen is not None:
        for point in points:
            if _distance_mm(point, chosen) <= 0.1:
                return point
    raise UnprocessableError(
        f"RT Plan {uid} has {len(points)} isocentres {listed} mm LPS; choose one for the course "
        "(PATCH /api/v1/courses/{id} with isocenter_lps_mm) or give it with the fraction"
    )


def _distance_mm(a: LpsPoint, b: LpsPoint) -> float:
    return float(np.linalg.norm(a.as_array() - b.as_array()))


def read_package(
    rtstruct: UploadedFiles | None,
    rtplan: UploadedFiles | None,
    embedded: dict[PlanningKind, list[tuple[Path, str]]] | None = None,
) -> PackageIn:
    """The RT objects sent in their own fields and inside the CT's zip/folder, read and chosen."""
    embedded = embedded or {}
    chosen: dict[PlanningKind, RtFile] = {}
    for kind, uploaded in ((PlanningKind.RTSTRUCT, rtstruct), (PlanningKind.RTPLAN, rtplan)):
        files = [*(uploaded.files if uploaded else ()), *embedded.get(kind, ())]
        if files:
            chosen[kind] = read_rt_files(kind, _rt_only(kind, files))
    return PackageIn(chosen.get(PlanningKind.RTSTRUCT), chosen.get(PlanningKind.RTPLAN))


def _rt_only(kind: PlanningKind, files: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """The files of a field, refusing one that is not of the field's kind (by SOP Class)."""
    for path, _ in files:
        found = rt_kind_of(path)
        if found is not kind:
            raise UnprocessableError(
                f"{path.name} is {'not an RT object' if found is None else _WHAT[found]}, "
                f"but was sent as the {_WHAT[kind]} (field '{kind.value}')"
            )
    return files


def check_for_course(
    session: Session, store: ImageStore, course: Course, package: PackageIn
) -> tuple[str, ...]:
    """Check ``package`` against the course's planning CT (and its current structure set when
    only a plan is sent)."""
    structure_set = package.structure_set.structure_set if package.structure_set else None
    if structure_set is None and package.plan is not None:
        stored = current(session, course.id, PlanningKind.RTSTRUCT)
        structure_set = None if stored is None else load_structure_set(store, stored)
    plan = package.plan.plan if package.plan else None
    return check_package(ct_identity(course.planning_series), structure_set, plan)


def attach_package(
    session: Session,
    store: ImageStore,
    course: Course,
    package: PackageIn,
    warnings: Sequence[str],
    placed: list[str],
    actor: str,
) -> None:
    for rt in (package.structure_set, package.plan):
        if rt is not None:
            attach(session, store, course, rt, warnings, placed, actor)


def package_hashes(package: PackageIn) -> list[str]:
    return [rt.content_sha256 for rt in (package.structure_set, package.plan) if rt is not None]

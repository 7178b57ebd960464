"""Received RT Structure Sets and RT Plans: attached to the course whose planning CT shares their
Frame of Reference (an RT Plan without one: the course holding the structure set it references).

The use case is the one behind ``PUT /api/v1/courses/{id}/rtstruct|rtplan`` (checks, storage,
audit). An object whose course is not there yet (its planning CT has not arrived) is kept in the
inbox and tried again; once used or refused it gets a ``dicom_series`` row (kind planning, state
done or failed with the reason), as a CT series does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from pydicom.uid import RTPlanStorage, RTStructureSetStorage
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.context import ServiceContext
from app.db import repository as repo
from app.db.models import Course, ImageSeries
from app.db.models_dicom import DicomInstance, DicomSeries, SeriesKind, SeriesState
from app.db.models_planning import PlanningKind, PlanningObject
from app.errors import ServiceError
from app.services.courses import put_rt_object
from app.services.ingest import UploadedFiles
from app.services.planning import read_rt_files

log = logging.getLogger(__name__)

RT_SOP_CLASSES = {
    str(RTStructureSetStorage): PlanningKind.RTSTRUCT,
    str(RTPlanStorage): PlanningKind.RTPLAN,
}
_WHAT = {PlanningKind.RTSTRUCT: "RT Structure Set", PlanningKind.RTPLAN: "RT Plan"}


def attach_received(ctx: ServiceContext, row: DicomInstance, path: Path) -> bool:
    """Attach one received RT object; False while its course does not exist yet."""
    kind = RT_SOP_CLASSES[row.sop_class_uid]
    actor = f"{row.source}:{row.sender}"
    try:
        rt = read_rt_files(kind, [(path, row.file_sha256)])
        obj = rt.structure_set or rt.plan
        assert obj is not None
        references = () if rt.plan is None else rt.plan.referenced_structure_set_uids
        with ctx.sessions() as session:
            course = course_for(session, row.patient_id, obj.frame_of_reference_uid, references)
        if course is None:
            return False
        saved = UploadedFiles(_WHAT[kind], ((path, row.file_sha256),))
        put_rt_object(ctx, course.id, kind, saved, actor)
    except ServiceError as exc:
        _finish(ctx, row, kind, None, exc.detail, actor)
        return True
    _finish(ctx, row, kind, course.id, None, actor)
    log.info("DICOM %s %s attached to course %d", _WHAT[kind], row.sop_instance_uid, course.id)
    return True


def course_for(
    session: Session, patient_id: str, frame_uid: str, structure_sets: Sequence[str]
) -> Course | None:
    """The patient's newest course on a planning CT of ``frame_uid`` (or, without one, holding
    one of ``structure_sets``)."""
    if frame_uid:
        query = (
            select(Course)
            .join(ImageSeries, Course.planning_series_id == ImageSeries.id)
            .where(Course.patient_id == patient_id, ImageSeries.frame_of_reference_uid == frame_uid)
        )
    else:
        query = (
            select(Course)
            .join(PlanningObject, PlanningObject.course_id == Course.id)
            .where(
                Course.patient_id == patient_id,
                PlanningObject.sop_instance_uid.in_(list(structure_sets)),
            )
        )
    return session.scalars(query.order_by(Course.id.desc())).first()


def _finish(
    ctx: ServiceContext,
    row: DicomInstance,
    kind: PlanningKind,
    course_id: int | None,
    error: str | None,
    actor: str,
) -> None:
    with ctx.writer() as session:
        series = session.scalar(
            select(DicomSeries).where(DicomSeries.series_instance_uid == row.series_instance_uid)
        )
        if series is None:
            series = DicomSeries(
                series_instance_uid=row.series_instance_uid,
                study_instance_uid=row.study_instance_uid,
                patient_id=row.patient_id,
                series_description=row.series_description,
                source=row.source,
                sender=row.sender,
                kind=SeriesKind.PLANNING.value,
                rule=f"{_WHAT[kind]}: attached by Frame of Reference",
                state=SeriesState.DONE.value,
                n_instances=0,
                n_late=0,
            )
            session.add(series)
            session.flush()
        series.n_instances += 1
        series.state = (SeriesState.FAILED if error else SeriesState.DONE).value
        series.course_id = course_id
        series.error = error
        session.get_one(DicomInstance, row.id).series_id = series.id
        if error:
            log.warning("DICOM %s %s refused: %s", _WHAT[kind], row.sop_instance_uid, error)
            repo.record_audit(
                session,
                actor=actor,
                action="dicom_series_refused",
                entity="dicom_series",
                entity_id=series.id,
                detail={
                    "series_instance_uid": row.series_instance_uid,
                    "sop_instance_uid": row.sop_instance_uid,
                    "patient_id": row.patient_id,
                    "kind": kind.value,
                    "error": error,
                },
            )
        session.commit()

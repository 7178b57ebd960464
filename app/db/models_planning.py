"""Tables of the planning package (migration 0009): a course's RT Structure Sets and RT Plans.

``planning_objects``: one row per RT Structure Set or RT Plan attached to a course, its single
DICOM file stored content-addressed in the image store beside the CT (``content_sha256`` is the
store key, :func:`app.storage.series_content_hash` of the file's digest). A course uses the
newest row of each kind (``id`` order); earlier rows stay for the audit trail and the fractions
registered with them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum, unique
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base, EnumColumn, UtcDateTime, utcnow


@unique
class PlanningKind(StrEnum):
    RTSTRUCT = "rtstruct"
    RTPLAN = "rtplan"


class PlanningObject(Base):
    """An RT Structure Set or RT Plan of a course (checked against its planning CT)."""

    __tablename__ = "planning_objects"
    __table_args__ = (
        UniqueConstraint(
            "course_id", "kind", "content_sha256", name="uq_planning_objects_course_kind_sha"
        ),
        CheckConstraint("kind IN ('rtstruct', 'rtplan')", name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id"), index=True)
    kind: Mapped[PlanningKind] = mapped_column(EnumColumn(PlanningKind, 16))
    content_sha256: Mapped[str] = mapped_column(String(64), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    frame_of_reference_uid: Mapped[str] = mapped_column(String(64), default="")
    label: Mapped[str] = mapped_column(String(64), default="")
    approval_status: Mapped[str] = mapped_column(String(16), default="")
    #: RT Plan: the distinct isocentres [[x, y, z], ...] LPS mm; RT Structure Set: the ROIs
    #: [{"name", "type", "color"}] — for the API and the review page without reading the file
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))

"""Tables of the DICOM ingest and export (migration 0003).

* ``dicom_instances``: one row per received SOP instance (C-STORE or STOW-RS), written in the same
  breath as its file in the inbox (``<data_dir>/dicom-inbox``), before the sender is answered.
  ``series_id`` is NULL until the grouper has taken the instance into its series.
* ``dicom_series``: one row per received series, owned by the grouper (app/dicom/grouping.py):
  what the series was taken for (``kind``), where it stands (``state``), and the course or
  fraction it became.
* ``dicom_unassigned`` (migration 0007): a received series no rule identified (or a new planning
  CT of a patient who has a course, not from a planning CT sender), held for a physicist, who
  assigns it (the planning CT of a new course, or an MVCT of a course) or discards it. While it
  is held its ``dicom_series`` row is ``ignored``; ``resolution`` is NULL until someone decides.
* ``dicom_reg_exports``: each attempt to send a signed-off fraction's Spatial Registration object
  to the configured C-STORE destination (one row per sign-off and destination).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum, unique

from sqlalchemy import CheckConstraint, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base, UtcDateTime, utcnow


@unique
class SeriesKind(StrEnum):
    PLANNING = "planning"  #: becomes (or is) a course's planning CT
    MVCT = "mvct"  #: becomes a fraction of the patient's course
    IGNORED = "ignored"  #: matched no rule and ``dicom_unmatched_series`` is "ignore"


@unique
class SeriesState(StrEnum):
    PENDING = "pending"  #: complete, taken by the grouper, not yet turned into a course/fraction
    WAITING = "waiting"  #: an MVCT whose patient has no course yet (kept until a planning CT)
    DONE = "done"
    FAILED = "failed"  #: refused by the ingest path; ``error`` says why (sending more retries)
    IGNORED = "ignored"


class DicomInstance(Base):
    """A received instance: its file is ``<inbox>/<file_sha256[:2]>/<file_sha256>.dcm``."""

    __tablename__ = "dicom_instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    study_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    series_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    series_description: Mapped[str] = mapped_column(String(200), default="")
    #: ImagePositionPatient z (LPS mm), for the "longest series" rule; None when absent
    position_z_mm: Mapped[float | None] = mapped_column(Float, default=None)
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    file_sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))  #: "c-store" or "stow-rs"
    sender: Mapped[str] = mapped_column(String(100))  #: calling AE title, or the API key's name
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    series_id: Mapped[int | None] = mapped_column(
        ForeignKey("dicom_series.id"), index=True, default=None
    )


class DicomSeries(Base):
    """A received series as the grouper sees it."""

    __tablename__ = "dicom_series"
    __table_args__ = (
        CheckConstraint("kind IN ('planning', 'mvct', 'ignored')", name="kind"),
        CheckConstraint(
            "state IN ('pending', 'waiting', 'done', 'failed', 'ignored')", name="state"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    patient_id: Mapped[str] = mapped_column(String(64), index=True, default="")
    series_description: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[str] = mapped_column(String(16))
    sender: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    #: which rule decided ``kind`` (e.g. "series description matches 'CTrue Image Set'")
    rule: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[str] = mapped_column(String(16), index=True)
    n_instances: Mapped[int] = mapped_column(Integer, default=0)
    #: instances that arrived after the series was used (kept, not used)
    n_late: Mapped[int] = mapped_column(Integer, default=0)
    course_id: Mapped[int | None] = mapped_column(ForeignKey("courses.id"), default=None)
    fraction_id: Mapped[int | None] = mapped_column(ForeignKey("fractions.id"), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class DicomUnassigned(Base):
    """A series held for a physicist's decision (see the module docstring)."""

    __tablename__ = "dicom_unassigned"
    __table_args__ = (
        CheckConstraint("resolution IN ('planning', 'mvct', 'discarded')", name="resolution"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("dicom_series.id"), unique=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True, default="")
    #: why the series was held (the rule that did not identify it)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    #: what the physicist decided; NULL while the series is held
    resolution: Mapped[str | None] = mapped_column(String(16), default=None, index=True)
    resolved_by: Mapped[str | None] = mapped_column(String(100), default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    #: the physicist's words (why this series is that, or why it is discarded)
    note: Mapped[str | None] = mapped_column(Text, default=None)


class DicomRegExport(Base):
    """Sending one sign-off's REG to one destination (``status`` sent or failed, with tries)."""

    __tablename__ = "dicom_reg_exports"
    __table_args__ = (
        UniqueConstraint("signoff_id", "destination", name="uq_dicom_reg_exports_signoff_id"),
        CheckConstraint("status IN ('sent', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    fraction_id: Mapped[int] = mapped_column(ForeignKey("fractions.id"), index=True)
    #: the sign-off (``signoffs.id``) whose decision the REG carries
    signoff_id: Mapped[int] = mapped_column(Integer)
    destination: Mapped[str] = mapped_column(String(200))
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

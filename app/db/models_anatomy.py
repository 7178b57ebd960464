"""Tables of the anatomy-change alert and of daily imaging QA (migration 0011).

* ``fraction_figures``: what the registration job measured beyond the couch correction, written
  in the same transaction as the registration result — the anatomy figures of a patient fraction
  (:class:`registration.anatomy.AnatomyFigures` JSON form) or the image figures of a QA phantom
  scan (:class:`registration.qa_phantom.QaImageFigures` JSON form), or why none could be measured.
* ``anatomy_settings``: a course's alert levels (:class:`registration.anatomy_alert.
  AnatomyAlertSettings` JSON form); no row: the core's defaults.
* ``acknowledgements`` (append-only): a physician acknowledged a fraction's anatomy alert, or a
  physicist a failed QA scan, with a note.
* ``qa_courses``: a course whose planning CT is a QA phantom's reference CT, for one machine
  (DICOM StationName), with its positioning tolerance and, optionally, the image baseline.
* ``qa_offsets`` (append-only): the couch offset APPLIED to the phantom before a QA scan (IEC
  61217 table axes), posted with the scan or entered on the QA page; the latest row counts.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum, unique
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base, UtcDateTime, utcnow
from registration.couch import CouchCorrection


@unique
class AckKind(StrEnum):
    ANATOMY = "anatomy"  #: a physician read the anatomy-change alert of a fraction
    QA = "qa"  #: a physicist read a failed daily QA scan


class FractionFigures(Base):
    __tablename__ = "fraction_figures"

    id: Mapped[int] = mapped_column(primary_key=True)
    fraction_id: Mapped[int] = mapped_column(ForeignKey("fractions.id"), unique=True)
    anatomy: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    phantom: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    #: why nothing was measured (the registration itself stands)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class AnatomySettingsRow(Base):
    __tablename__ = "anatomy_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id"), unique=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(100))


class Acknowledgement(Base):
    __tablename__ = "acknowledgements"

    id: Mapped[int] = mapped_column(primary_key=True)
    fraction_id: Mapped[int] = mapped_column(ForeignKey("fractions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    printed_name: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class QaCourse(Base):
    __tablename__ = "qa_courses"

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id"), unique=True)
    machine: Mapped[str] = mapped_column(String(64), unique=True)
    treats_srs_sbrt: Mapped[bool] = mapped_column(Boolean)
    translation_tolerance_mm: Mapped[float] = mapped_column(Float)
    rotation_tolerance_deg: Mapped[float] = mapped_column(Float)
    #: QaImageBaseline as {"noise_hu", "uniformity_hu", "inserts": {name: value}}; None: the
    #: mean of the first scans
    baseline: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))


class QaOffset(Base):
    __tablename__ = "qa_offsets"

    id: Mapped[int] = mapped_column(primary_key=True)
    fraction_id: Mapped[int] = mapped_column(ForeignKey("fractions.id"), index=True)
    lateral_mm: Mapped[float] = mapped_column(Float)
    longitudinal_mm: Mapped[float] = mapped_column(Float)
    vertical_mm: Mapped[float] = mapped_column(Float)
    pitch_deg: Mapped[float] = mapped_column(Float)
    roll_deg: Mapped[float] = mapped_column(Float)
    yaw_deg: Mapped[float] = mapped_column(Float)
    entered_by: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    @property
    def applied(self) -> CouchCorrection:
        """The couch offset applied to the phantom (IEC 61217 table axes, mm and degrees)."""
        return CouchCorrection.from_attributes(self)

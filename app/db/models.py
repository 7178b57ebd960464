"""The tables, as SQLAlchemy 2 typed ORM classes. The migrations in ``migrations/`` create them.

Invariants the schema itself enforces:

* one stored image series per content hash (``image_series.content_sha256`` unique);
* one fraction per MVCT series (``fractions.mvct_series_id`` unique): posting the same MVCT twice
  finds the existing fraction;
* one fraction per number in a course: unique ``course_id, fraction_number, image_number``, where
  ``image_number`` > 1 only for a repeat or verification image declared as such;
* one job and at most one registration result per fraction (unique ``fraction_id``);
* ``audit_events`` and ``registration_results`` are append-only (database triggers, see
  :mod:`app.db.append_only`).

This module is also the one place that maps rows to the core's types: enum columns read back as
the core's enums (:class:`EnumColumn`), a stored registration reads back as
:class:`registration.result.RegistrationResult` (:attr:`RegistrationResult.engine_result`), the
couch columns as :class:`registration.couch.CouchCorrection` and the isocentre columns as
:class:`registration.geometry.LpsPoint`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum, StrEnum, unique
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

from registration.couch import CouchCorrection, Dof
from registration.frames import PatientPosition
from registration.geometry import LpsPoint
from registration.result import Mode
from registration.result import RegistrationResult as EngineResult

#: the longest DICOM Patient Position code (HFDL, FFDR …: 4 characters) with room to spare;
#: SQLite, which does not enforce VARCHAR lengths, keeps the VARCHAR(3) it was created with
#: (migration 0005)
POSITION_LENGTH = 8
_SQLITE_POSITION_LENGTH = 3

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


E = TypeVar("E", bound=Enum)


class EnumColumn(TypeDecorator[E], Generic[E]):
    """An enum stored as its text value; reads back as the enum member.

    Writing a value that is not a member raises ``ValueError`` naming it, so no unknown code
    reaches the database.
    """

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite" and self.enum is PatientPosition:
            return dialect.type_descriptor(String(_SQLITE_POSITION_LENGTH))
        return dialect.type_descriptor(self.impl_instance)

    def process_bind_param(self, value: E | str | int | None, dialect: Dialect) -> Any:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


class IntEnumColumn(EnumColumn[E]):
    """An integer enum stored as its integer value."""

    impl = Integer  # type: ignore[assignment]  # the integer flavour of the same mapping
    cache_ok = True

    def __init__(self, enum: type[E]) -> None:
        TypeDecorator.__init__(self)
        self.enum = enum


def _lps_or_none(x_mm: float | None, y_mm: float | None, z_mm: float | None) -> LpsPoint | None:
    if x_mm is None or y_mm is None or z_mm is None:
        return None
    return LpsPoint(x_mm, y_mm, z_mm)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


@unique
class Role(StrEnum):
    CONSOLE = "console"  #: the treatment console's API key: post images, read results
    THERAPIST = "therapist"  #: read
    PHYSICIAN = "physician"  #: sign off
    PHYSICIST = "physicist"  #: reports, configuration
    ADMIN = "admin"  #: users and keys


@unique
class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(EnumColumn(Role, 16))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(EnumColumn(Role, 16))
    #: SHA-256 (hex) of the whole key; the key itself is shown once and never stored
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)


class ImageSeries(Base):
    """One CT series stored content-addressed under ``<data_dir>/images/<sha[:2]>/<sha>/``."""

    __tablename__ = "image_series"

    id: Mapped[int] = mapped_column(primary_key=True)
    content_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    frame_of_reference_uid: Mapped[str] = mapped_column(String(64), default="")
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    #: PatientName and PatientBirthDate (YYYYMMDD) as sent; "" when absent (migration 0007)
    patient_name: Mapped[str] = mapped_column(String(200), default="")
    patient_birth_date: Mapped[str] = mapped_column(String(8), default="")
    series_description: Mapped[str] = mapped_column(String(200), default="")
    patient_position: Mapped[PatientPosition] = mapped_column(
        EnumColumn(PatientPosition, POSITION_LENGTH)
    )
    n_files: Mapped[int] = mapped_column(Integer)
    #: axis-aligned bounding box of the voxel centres, LPS mm
    min_x_mm: Mapped[float] = mapped_column(Float)
    min_y_mm: Mapped[float] = mapped_column(Float)
    min_z_mm: Mapped[float] = mapped_column(Float)
    max_x_mm: Mapped[float] = mapped_column(Float)
    max_y_mm: Mapped[float] = mapped_column(Float)
    max_z_mm: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Course(Base):
    """A course of treatment: one patient, one planning CT, the settings every fraction uses."""

    __tablename__ = "courses"
    __table_args__ = (
        UniqueConstraint(
            "patient_id", "planning_series_id", name="uq_courses_patient_id_planning_series_id"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    planning_series_id: Mapped[int] = mapped_column(ForeignKey("image_series.id"))
    isocenter_x_mm: Mapped[float | None] = mapped_column(Float, default=None)
    isocenter_y_mm: Mapped[float | None] = mapped_column(Float, default=None)
    isocenter_z_mm: Mapped[float | None] = mapped_column(Float, default=None)
    patient_position: Mapped[PatientPosition] = mapped_column(
        EnumColumn(PatientPosition, POSITION_LENGTH)
    )
    ptv_margin_mm: Mapped[float] = mapped_column(Float)
    dof: Mapped[Dof] = mapped_column(IntEnumColumn(Dof))
    mode: Mapped[Mode] = mapped_column(EnumColumn(Mode, 16))
    site: Mapped[str] = mapped_column(String(100), default="")
    #: a ROI name (or "PTV": every PTV-type ROI) whose region drives the registration
    match_structure: Mapped[str | None] = mapped_column(String(64), default=None)
    match_margin_mm: Mapped[float] = mapped_column(Float, default=15.0)
    #: planning-risk-volume margin of the serial organs at risk (residual warnings)
    prv_margin_mm: Mapped[float] = mapped_column(Float, default=3.0)
    #: comma-separated name parts that make an ORGAN ROI a serial organ at risk
    serial_oar_names: Mapped[str] = mapped_column(
        String(400), default="cord,brainstem,brain stem,optic,chiasm"
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))
    #: the treatment machine's profile (``machine_profiles.name``); None: matched per fraction
    #: by the MVCT's StationName
    machine_profile_name: Mapped[str | None] = mapped_column(String(100), default=None)
    #: a point of the machine's rotation (bore) axis, planning LPS mm (TomoTherapy: the machine
    #: isocentre of the plan); None: unknown, a bore-axis roll is flagged, never guessed
    rotation_axis_x_mm: Mapped[float | None] = mapped_column(Float, default=None)
    rotation_axis_y_mm: Mapped[float | None] = mapped_column(Float, default=None)
    rotation_axis_z_mm: Mapped[float | None] = mapped_column(Float, default=None)

    planning_series: Mapped[ImageSeries] = relationship(lazy="joined")

    @property
    def rotation_axis_point(self) -> LpsPoint | None:
        """A point of the machine's bore axis (planning LPS mm), or None when not known."""
        return _lps_or_none(
            self.rotation_axis_x_mm, self.rotation_axis_y_mm, self.rotation_axis_z_mm
        )

    @property
    def serial_oar_name_parts(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.serial_oar_names.split(",") if p.strip())

    @property
    def isocenter(self) -> LpsPoint | None:
        """The plan isocentre (LPS mm), or None when the course has none."""
        return _lps_or_none(self.isocenter_x_mm, self.isocenter_y_mm, self.isocenter_z_mm)


class Fraction(Base):
    """One daily MVCT of a course; its registration runs as the fraction's job."""

    __tablename__ = "fractions"
    __table_args__ = (
        Index(
            "uq_fractions_course_id_fraction_number",
            "course_id",
            "fraction_number",
            "image_number",
            unique=True,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id"), index=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    mvct_series_id: Mapped[int] = mapped_column(ForeignKey("image_series.id"), unique=True)
    fraction_number: Mapped[int] = mapped_column(Integer)
    #: 1; 2, 3 … for a repeat or verification image of the same fraction number (declared)
    image_number: Mapped[int] = mapped_column(Integer, default=1)
    dof: Mapped[Dof] = mapped_column(IntEnumColumn(Dof))
    mode: Mapped[Mode] = mapped_column(EnumColumn(Mode, 16))
    #: the isocentre asked for (request or course); None: the core's default (MVCT centre)
    isocenter_x_mm: Mapped[float | None] = mapped_column(Float, default=None)
    isocenter_y_mm: Mapped[float | None] = mapped_column(Float, default=None)
    isocenter_z_mm: Mapped[float | None] = mapped_column(Float, default=None)
    #: where the isocentre came from: rtplan | request | course | mvct_centre
    #: (:class:`registration.planning_package.IsocenterSource`); None before migration 0009
    isocenter_source: Mapped[str | None] = mapped_column(String(16), default=None)
    #: the RT objects registered with (planning_objects ids), and what the choice warned about
    #: (no foreign key: SQLite cannot add one to an existing table)
    rtstruct_id: Mapped[int | None] = mapped_column(Integer, default=None)
    rtplan_id: Mapped[int | None] = mapped_column(Integer, default=None)
    planning_warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))
    #: the MVCT's StationName (0008,1010), "" when absent
    station_name: Mapped[str] = mapped_column(String(64), default="")
    #: the machine profile in force when the fraction was received (its to_dict), None: none
    machine_profile: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    #: set on a verification scan: the fraction whose couch move it checks (no foreign-key
    #: constraint: SQLite cannot add one without rebuilding the referenced table, see 0005)
    verifies_fraction_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)

    course: Mapped[Course] = relationship(lazy="joined")
    mvct_series: Mapped[ImageSeries] = relationship(lazy="joined")
    job: Mapped[Job] = relationship(back_populates="fraction", lazy="joined")
    result: Mapped[RegistrationResult | None] = relationship(lazy="joined")

    @property
    def isocenter(self) -> LpsPoint | None:
        """The isocentre asked for (LPS mm); None: the core's default (MVCT centre)."""
        return _lps_or_none(self.isocenter_x_mm, self.isocenter_y_mm, self.isocenter_z_mm)


class Job(Base):
    """Where a fraction's registration stands; the source of truth across restarts."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    fraction_id: Mapped[int] = mapped_column(ForeignKey("fractions.id"), unique=True)
    status: Mapped[JobStatus] = mapped_column(
        EnumColumn(JobStatus, 16), index=True, default=JobStatus.QUEUED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    #: therapist-readable reason when failed
    error: Mapped[str | None] = mapped_column(Text, default=None)
    #: HTTP status that best describes the failure (422 bad input, 500 engine fault)
    error_status: Mapped[int | None] = mapped_column(Integer, default=None)
    #: last sign of life of the queue worker running the current attempt (app/jobs/heartbeat.py)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)

    fraction: Mapped[Fraction] = relationship(back_populates="job")


class RegistrationResult(Base):
    """The engine's answer for a fraction (append-only; at most one per fraction)."""

    __tablename__ = "registration_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    fraction_id: Mapped[int] = mapped_column(ForeignKey("fractions.id"), unique=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    lateral_mm: Mapped[float] = mapped_column(Float)
    longitudinal_mm: Mapped[float] = mapped_column(Float)
    vertical_mm: Mapped[float] = mapped_column(Float)
    pitch_deg: Mapped[float] = mapped_column(Float)
    roll_deg: Mapped[float] = mapped_column(Float)
    yaw_deg: Mapped[float] = mapped_column(Float)
    trusted: Mapped[bool] = mapped_column(Boolean)
    engine_version: Mapped[str] = mapped_column(String(64), default="")
    #: residual displacement per structure after the couch applies ``couch_correction``
    #: ([{"structure", "type", "max_mm", "p95_mm"}], :mod:`registration.residuals`)
    residuals: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    @classmethod
    def of(
        cls,
        fraction_id: int,
        result: EngineResult,
        residuals: list[dict[str, Any]] | None = None,
    ) -> RegistrationResult:
        """The row for the engine's ``result``: its JSON form plus the couch columns."""
        couch = result.couch_correction.rounded()
        return cls(
            fraction_id=fraction_id,
            result=result.to_dict(),
            **couch.as_dict(),
            trusted=result.trusted,
            engine_version=result.engine_version[:64],
            residuals=residuals or [],
        )

    @property
    def engine_result(self) -> EngineResult:
        """The stored result, typed as the engine answered it (values as stored)."""
        return EngineResult.from_dict(self.result)

    @property
    def couch_correction(self) -> CouchCorrection:
        """The proposed couch correction (IEC 61217 table axes), from its columns."""
        return CouchCorrection.from_attributes(self)


class AuditEvent(Base):
    """Every state change, append-only (database triggers refuse UPDATE and DELETE)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32), index=True)
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

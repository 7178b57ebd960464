"""Use cases and the row mapping against an in-memory SQLite session (no service, no files)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from app.db.models import AuditEvent, Base, Course, Fraction, ImageSeries, Job, JobStatus, Role
from app.db.models import RegistrationResult as ResultRow
from app.permissions import Action, may, roles_for
from app.services.courses import CourseSettings, place_course
from app.storage import ImageStore
from registration.couch import CouchCorrection, Dof
from registration.frames import PatientPosition
from registration.geometry import LpsPoint, RigidTransformLps
from registration.result import Mode, RegistrationQuality, RegistrationResult


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as db:
        yield db
    engine.dispose()


def _series(db: Session, sha: str, position: PatientPosition = PatientPosition.HFS) -> ImageSeries:
    row = ImageSeries(
        content_sha256=sha,
        series_instance_uid=f"1.2.3.{len(sha)}",
        patient_position=position,
        n_files=1,
        min_x_mm=-1.0,
        min_y_mm=-1.0,
        min_z_mm=-50.0,
        max_x_mm=1.0,
        max_y_mm=1.0,
        max_z_mm=50.0,
    )
    db.add(row)
    db.flush()
    return row


def test_a_planning_ct_gets_one_course_and_one_audit_event_however_often_it_is_placed(
    session: Session, tmp_path: Path
) -> None:
    store = ImageStore(tmp_path / "images", tmp_path / "tmp")
    planning = _series(session, "a" * 64)
    settings = CourseSettings(3.0, Dof.TRANSLATIONS_ROLL, Mode.BONE, "pelvis", LpsPoint(1, 2, 3))

    first, created = place_course(session, store, "P1", planning, settings, [], "tester")
    again, created_again = place_course(session, store, "P1", planning, settings, [], "tester")
    session.commit()

    assert created and not created_again
    assert again.id == first.id
    stored = session.scalars(select(Course)).one()
    assert stored.dof is Dof.TRANSLATIONS_ROLL and stored.mode is Mode.BONE
    assert stored.patient_position is PatientPosition.HFS
    assert stored.isocenter == LpsPoint(1.0, 2.0, 3.0)
    audit = session.scalars(select(AuditEvent)).one()
    assert audit.action == "course_created"
    assert audit.detail["dof"] == 4 and audit.detail["mode"] == "bone"


def test_a_stored_registration_reads_back_typed_with_its_couch_columns(session: Session) -> None:
    planning = _series(session, "b" * 64)
    mvct = _series(session, "c" * 64)
    course = Course(
        patient_id="P2",
        planning_series_id=planning.id,
        patient_position=PatientPosition.HFS,
        ptv_margin_mm=5.0,
        dof=Dof.SIX,
        mode=Mode.TISSUE,
        created_by="tester",
    )
    session.add(course)
    session.flush()
    fraction = Fraction(
        course_id=course.id,
        patient_id="P2",
        mvct_series_id=mvct.id,
        fraction_number=1,
        dof=Dof.SIX,
        mode=Mode.TISSUE,
        created_by="tester",
    )
    session.add(fraction)
    session.flush()
    session.add(Job(fraction_id=fraction.id, status=JobStatus.DONE))
    correction = CouchCorrection(1.234, -6.0, 0.5, 0.1, -0.2, 0.3)
    result = RegistrationResult(
        planning_to_daily_lps=RigidTransformLps.identity(),
        couch_correction=correction,
        couch_correction_6dof=correction,
        isocenter_lps_mm=LpsPoint(0.0, 10.0, -20.0),
        patient_position=PatientPosition.HFS,
        dof=Dof.SIX,
        mode=Mode.TISSUE,
        quality=RegistrationQuality(0.8, 0.99, 120, 1.5),
        trusted=True,
    )
    session.add(ResultRow.of(fraction.id, result))
    session.commit()
    session.expire_all()

    row = session.scalars(select(ResultRow)).one()
    assert row.engine_result == RegistrationResult.from_dict(result.to_dict())
    assert row.couch_correction == correction.rounded()
    assert row.couch_correction.exceeds_margin(course.ptv_margin_mm)  # 6 mm longitudinal > 5 mm
    assert session.get(Job, 1).status is JobStatus.DONE  # type: ignore[union-attr]


def test_an_unknown_patient_position_never_reaches_the_database(session: Session) -> None:
    with pytest.raises(StatementError, match="'XYZ' is not a valid PatientPosition"):
        _series(session, "d" * 64, "XYZ")  # type: ignore[arg-type]


def test_the_role_table_keeps_the_policy_the_routes_had() -> None:
    assert roles_for(Action.READ) == (Role.CONSOLE, Role.THERAPIST, Role.PHYSICIAN, Role.PHYSICIST)
    assert roles_for(Action.POST_IMAGES) == (Role.CONSOLE,)
    assert roles_for(Action.CREATE_COURSE) == (Role.CONSOLE, Role.PHYSICIAN, Role.PHYSICIST)
    assert roles_for(Action.CHANGE_COURSE) == (Role.PHYSICIAN, Role.PHYSICIST)
    assert roles_for(Action.READ_REPORTS) == (Role.PHYSICIST, Role.ADMIN)
    assert roles_for(Action.USE_PAGES) == (Role.THERAPIST, Role.PHYSICIAN, Role.PHYSICIST)
    assert roles_for(Action.SIGN_OFF) == (Role.PHYSICIAN,)
    assert not may(None, Action.READ) and not may("intruder", Action.READ)

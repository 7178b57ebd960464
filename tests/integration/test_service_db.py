"""The schema: migrations match the models on both databases; the audit trail is append-only."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.db import migrate
from app.db.engine import is_sqlite, make_engine
from app.db.models import Base


def test_the_migrations_create_exactly_the_tables_of_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    migrate.upgrade(engine)  # a second run is a no-op
    assert migrate.current_revision(engine) == migrate.head_revision()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys_on(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    with pytest.raises(DBAPIError), engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO jobs (fraction_id, status, attempts, created_at) "
                "VALUES (999, 'queued', 0, '2026-01-01')"
            )
        )
    engine.dispose()


@pytest.mark.parametrize(
    "table", ["audit_events", "registration_results", "acknowledgements", "qa_offsets"]
)
def test_append_only_tables_refuse_update_and_delete_at_database_level(
    database_url: str, table: str
) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    with engine.begin() as connection:
        if table == "audit_events":
            connection.execute(
                text(
                    "INSERT INTO audit_events (at, actor, action, entity, entity_id, detail) "
                    "VALUES (CURRENT_TIMESTAMP, 'test', 'received', 'fraction', '1', '{}')"
                )
            )
        else:
            _insert_result_chain(connection)
        if table == "qa_offsets":
            connection.execute(
                text(
                    "INSERT INTO qa_offsets (fraction_id, lateral_mm, longitudinal_mm, vertical_mm,"
                    " pitch_deg, roll_deg, yaw_deg, entered_by, at) VALUES"
                    " (1, 5, -3, 2, 0, 0, 0, 'test', CURRENT_TIMESTAMP)"
                )
            )
        if table == "acknowledgements":
            connection.execute(
                text(
                    "INSERT INTO users (id, username, full_name, role, password_hash, active,"
                    " created_at) VALUES (1, 'dr', 'Dr', 'physician', 'x', true, CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO acknowledgements (fraction_id, kind, user_id, printed_name, note,"
                    " at) VALUES (1, 'anatomy', 1, 'Dr', 'seen', CURRENT_TIMESTAMP)"
                )
            )
    statements = [f"UPDATE {table} SET id = id", f"DELETE FROM {table}"]
    if not is_sqlite(database_url):
        statements.append(f"TRUNCATE {table} CASCADE")
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))
    with engine.connect() as connection:
        assert connection.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 1
    engine.dispose()


def _insert_result_chain(connection: object) -> None:
    run = connection.execute  # type: ignore[attr-defined]
    run(
        text(
            "INSERT INTO image_series (id, content_sha256, series_instance_uid, study_instance_uid,"
            " frame_of_reference_uid, patient_id, series_description, patient_position, n_files,"
            " min_x_mm, min_y_mm, min_z_mm, max_x_mm, max_y_mm, max_z_mm, created_at) VALUES"
            " (1, 'a', '1.2', '', '', 'P', '', 'HFS', 1, 0, 0, 0, 1, 1, 1, CURRENT_TIMESTAMP)"
        )
    )
    run(
        text(
            "INSERT INTO courses (id, patient_id, planning_series_id, patient_position,"
            " ptv_margin_mm, dof, mode, site, created_at, created_by) VALUES"
            " (1, 'P', 1, 'HFS', 3, 6, 'tissue', '', CURRENT_TIMESTAMP, 'test')"
        )
    )
    run(
        text(
            "INSERT INTO fractions (id, course_id, patient_id, mvct_series_id, fraction_number,"
            " dof, mode, created_at, created_by) VALUES"
            " (1, 1, 'P', 1, 1, 6, 'tissue', CURRENT_TIMESTAMP, 'test')"
        )
    )
    run(
        text(
            "INSERT INTO registration_results (fraction_id, result, lateral_mm, longitudinal_mm,"
            " vertical_mm, pitch_deg, roll_deg, yaw_deg, trusted, engine_version, created_at)"
            " VALUES (1, '{}', 0, 0, 0, 0, 0, 0, true, 'x', CURRENT_TIMESTAMP)"
        )
    )

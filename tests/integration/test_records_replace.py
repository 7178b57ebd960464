"""Append-only tables refuse every way of rewriting a row, REPLACE and upserts included.

On SQLite ``REPLACE INTO`` (and ``INSERT OR REPLACE``) removes the conflicting row without firing
DELETE triggers (unless ``recursive_triggers`` is on, which is a per-connection choice nobody
outside the service makes), so the UPDATE/DELETE guards alone let a signed row be rewritten. On
PostgreSQL ``INSERT … ON CONFLICT DO UPDATE`` is an UPDATE of the existing row.
"""

from __future__ import annotations

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.db import migrate
from app.db.engine import is_sqlite, make_engine

_USER = (
    "INSERT INTO users (id, username, full_name, role, password_hash, active, created_at) "
    "VALUES (1, 'dr-a', 'Dr A', 'physician', 'x', true, CURRENT_TIMESTAMP)"
)
_SERIES = (
    "INSERT INTO image_series (id, content_sha256, series_instance_uid, study_instance_uid,"
    " frame_of_reference_uid, patient_id, series_description, patient_position, n_files,"
    " min_x_mm, min_y_mm, min_z_mm, max_x_mm, max_y_mm, max_z_mm, created_at) VALUES"
    " (1, 'a', '1.2', '', '', 'P', '', 'HFS', 1, 0, 0, 0, 1, 1, 1, CURRENT_TIMESTAMP)"
)
_COURSE = (
    "INSERT INTO courses (id, patient_id, planning_series_id, patient_position, ptv_margin_mm,"
    " dof, mode, site, created_at, created_by) VALUES"
    " (1, 'P', 1, 'HFS', 3, 6, 'tissue', '', CURRENT_TIMESTAMP, 'test')"
)
_FRACTION = (
    "INSERT INTO fractions (id, course_id, patient_id, mvct_series_id, fraction_number, dof,"
    " mode, created_at, created_by) VALUES (1, 1, 'P', 1, 1, 6, 'tissue', CURRENT_TIMESTAMP,"
    " 'test')"
)


def _signoff(verb: str, lateral_mm: float, decision: str, tail: str = "") -> str:
    return (
        f"{verb} signoffs (id, fraction_id, decision, lateral_mm, longitudinal_mm, vertical_mm,"
        " pitch_deg, roll_deg, yaw_deg, reason, override_large_shift, signer_user_id,"
        " printed_name, meaning, signed_at, record_sha256) VALUES"
        f" (1, 1, '{decision}', {lateral_mm}, 3.04, -1.49, -0.52, -0.98, 0.49, NULL, false, 1,"
        f" 'Dr A', 'Approved couch correction', CURRENT_TIMESTAMP, '{'0' * 64}'){tail}"
    )


def _audit(verb: str, action: str, tail: str = "") -> str:
    return (
        f"{verb} audit_events (id, at, actor, action, entity, entity_id, detail) VALUES"
        f" (1, CURRENT_TIMESTAMP, 'dr-a', '{action}', 'fraction', '1', '{{}}'){tail}"
    )


def _result(verb: str, lateral_mm: float, row_id: int, tail: str = "") -> str:
    return (
        f"{verb} registration_results (id, fraction_id, result, lateral_mm, longitudinal_mm,"
        " vertical_mm, pitch_deg, roll_deg, yaw_deg, trusted, engine_version, created_at)"
        f" VALUES ({row_id}, 1, '{{}}', {lateral_mm}, 0, 0, 0, 0, 0, true, 'x', CURRENT_TIMESTAMP)"
        f"{tail}"
    )


def _rewrites(sqlite: bool) -> dict[str, list[str]]:
    if sqlite:
        verbs = ["REPLACE INTO", "INSERT OR REPLACE INTO"]
        return {
            "signoffs": [_signoff(v, 9.0, "approved_adjusted") for v in verbs],
            "audit_events": [_audit(v, "forged") for v in verbs],
            # a new id with the same fraction: REPLACE would remove the old result by its key
            "registration_results": [_result(v, 9.0, 2) for v in verbs]
            + [_result(v, 9.0, 1) for v in verbs],
        }
    upsert = " ON CONFLICT (id) DO UPDATE SET "
    return {
        "signoffs": [
            _signoff("INSERT INTO", 9.0, "approved_adjusted", upsert + "lateral_mm = 9.0")
        ],
        "audit_events": [_audit("INSERT INTO", "forged", upsert + "action = 'forged'")],
        "registration_results": [
            _result(
                "INSERT INTO", 9.0, 2, " ON CONFLICT (fraction_id) DO UPDATE SET lateral_mm = 9"
            )
        ],
    }


def test_replace_and_upserts_cannot_rewrite_a_signature_an_audit_event_or_a_result(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    sqlite = is_sqlite(database_url)
    with engine.begin() as connection:
        for statement in (_USER, _SERIES, _COURSE, _FRACTION):
            connection.execute(text(statement))
        connection.execute(text(_signoff("INSERT INTO", -2.57, "approved")))
        connection.execute(text(_audit("INSERT INTO", "signed")))
        connection.execute(text(_result("INSERT INTO", -2.57, 1)))
    for statements in _rewrites(sqlite).values():
        for statement in statements:
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
                connection.execute(text(statement))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*), min(lateral_mm) FROM signoffs")).one() == (
            1,
            -2.57,
        )
        assert connection.execute(text("SELECT decision FROM signoffs")).scalar() == "approved"
        assert connection.execute(text("SELECT action FROM audit_events")).scalar() == "signed"
        assert connection.execute(
            text("SELECT count(*), min(lateral_mm) FROM registration_results")
        ).one() == (1, -2.57)
    engine.dispose()


def test_fractions_stored_with_a_repeated_number_become_numbered_images_when_migrating(
    database_url: str,
) -> None:
    """Before 0008 a number could repeat (a repeat image, or by accident): the migration keeps
    the (signed) number and numbers the images 1, 2 … in the order they were received."""
    engine = make_engine(database_url)
    migrate.upgrade(
        engine
    )  # a fresh file, or the migrated PostgreSQL template: back to 0008's parent
    with engine.begin() as connection:
        config = migrate.alembic_config(engine)
        config.attributes["connection"] = connection
        before = ScriptDirectory.from_config(config).get_revision("0008").down_revision
        command.downgrade(config, str(before))
    with engine.begin() as connection:
        for statement in (_USER, _SERIES, _COURSE):
            connection.execute(text(statement))
        for series_id in (2, 3, 4):
            connection.execute(
                text(
                    _SERIES.replace(
                        "(1, 'a', '1.2'", f"({series_id}, '{series_id}', '1.{series_id}'"
                    )
                )
            )
        for fraction_id, number in ((1, 1), (2, 1), (3, 2), (4, 1)):
            connection.execute(
                text(
                    "INSERT INTO fractions (id, course_id, patient_id, mvct_series_id,"
                    " fraction_number, dof, mode, created_at, created_by) VALUES"
                    f" ({fraction_id}, 1, 'P', {fraction_id}, {number}, 6, 'tissue',"
                    f" '2026-11-2{fraction_id} 09:00:00', 'test')"
                )
            )
    migrate.upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT id, fraction_number, image_number FROM fractions ORDER BY id")
        ).all()
    assert [tuple(r) for r in rows] == [(1, 1, 1), (2, 1, 2), (3, 2, 1), (4, 1, 3)]
    engine.dispose()

"""On PostgreSQL the application's own role cannot rewrite history either.

The service connects as an ordinary role that owns nothing: it may SELECT, INSERT, UPDATE and
DELETE the tables (that is what the application needs), but the append-only triggers on
``audit_events`` and ``registration_results`` refuse UPDATE and DELETE, and, not owning the
tables, the role can neither switch the triggers off nor drop them, nor TRUNCATE. (The row
triggers of ``registration_results`` are tested with rows in ``tests/integration``.)
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import service_fixtures as sf
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

pytestmark = pytest.mark.postgres

REFUSED = [
    ("UPDATE audit_events SET actor = 'someone else'", "append-only"),
    ("DELETE FROM audit_events", "append-only"),
    ("TRUNCATE registration_results", "permission denied"),
    ("TRUNCATE audit_events", "permission denied"),
    ("ALTER TABLE audit_events DISABLE TRIGGER USER", "must be owner"),
    ("DROP TRIGGER audit_events_append_only ON audit_events", "must be owner"),
]


@pytest.fixture(scope="module")
def app_role_engine() -> Iterator[Engine]:
    """A fresh database, and an engine connected as a new non-superuser application role."""
    if not sf.postgres_reachable():
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    databases = sf.postgres()
    url = databases.new_database()
    role = f"mvct_guide_app_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE'))
        for grant in (
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"',
            f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"',
        ):
            connection.execute(text(grant))
        connection.execute(
            text(
                "INSERT INTO audit_events (at, actor, action, entity, entity_id, detail) "
                "VALUES (now(), 'test', 'received', 'fraction', '1', '{}')"
            )
        )
    engine = create_engine(make_url(url).set(username=role))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP OWNED BY "{role}"'))
        admin.dispose()
        databases.drop(url)
        with databases.admin.connect() as connection:
            connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))


def test_the_application_role_is_an_ordinary_role_that_may_append(app_role_engine: Engine) -> None:
    with app_role_engine.begin() as connection:
        superuser = connection.scalar(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        )
        assert superuser is False
        connection.execute(
            text(
                "INSERT INTO audit_events (at, actor, action, entity, entity_id, detail) "
                "VALUES (now(), 'app', 'received', 'fraction', '2', '{}')"
            )
        )
        assert connection.scalar(text("SELECT count(*) FROM audit_events")) == 2


@pytest.mark.parametrize(("statement", "reason"), REFUSED)
def test_the_application_role_cannot_change_or_remove_the_audit_trail(
    app_role_engine: Engine, statement: str, reason: str
) -> None:
    with pytest.raises(DBAPIError) as refused, app_role_engine.begin() as connection:
        connection.execute(text(statement))
    assert reason in str(refused.value)
    with app_role_engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM audit_events")) >= 1

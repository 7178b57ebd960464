"""Database-level guards that make a table append-only, on SQLite and on PostgreSQL.

The application user cannot UPDATE or DELETE a guarded row: SQLite triggers ``RAISE(ABORT)``, a
PostgreSQL trigger function raises an exception (TRUNCATE is refused as well). Used by the
migrations for the audit trail and the registration results; signed records use it too.

Rewriting a row by inserting over it is refused too. On SQLite ``REPLACE INTO`` / ``INSERT OR
REPLACE`` deletes the conflicting row *without* firing DELETE triggers (they fire only when the
connection has ``PRAGMA recursive_triggers`` on, which a person with the file and the ``sqlite3``
shell does not set), so :func:`create_replace_guard` adds a BEFORE INSERT trigger that refuses a
row whose key (the primary key and every unique column) already exists — before SQLite resolves
the conflict, so REPLACE, INSERT OR REPLACE and upserts all stop there. On PostgreSQL
``INSERT … ON CONFLICT DO UPDATE`` fires the BEFORE UPDATE row trigger, which refuses it.

Triggers stop mistakes and the service's own database user; someone who can edit the database
file can drop them. That is what the record chain (:mod:`app.db.record_chain`) detects.
"""

from __future__ import annotations

from alembic import op

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION mvct_guide_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""


def create_guard(table: str) -> None:
    """Install the append-only guard on ``table`` (inside an Alembic migration)."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} refused'); END"
            )
    elif dialect == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION mvct_guide_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION mvct_guide_refuse_change()"
        )
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise RuntimeError(f"no append-only guard for the {dialect} dialect")


def create_replace_guard(table: str, keys: tuple[str, ...] = ("id",)) -> None:
    """Refuse an INSERT whose ``keys`` collide with a stored row of ``table`` (SQLite; PostgreSQL's
    upsert is already an UPDATE, refused by :func:`create_guard`)."""
    if op.get_bind().dialect.name != "sqlite":
        return
    clash = " OR ".join(f"{key} = NEW.{key}" for key in keys)
    op.execute(
        f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
        f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {clash}) "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: a row with this key exists, "
        "REPLACE or upsert refused'); END"
    )


def drop_replace_guard(table: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_replace")


def drop_guard(table: str) -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    elif dialect == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")

"""records: REPLACE refused, the record chain, unique fraction numbers, job heartbeats

Revision ID: 0008
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.db import append_only

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None

#: append-only tables and their keys (primary key and unique columns)
_GUARDED = {
    "audit_events": ("id",),
    "signoffs": ("id",),
    "registration_results": ("id", "fraction_id"),
    "acknowledgements": ("id",),
    "qa_offsets": ("id",),
}


def upgrade() -> None:
    for table, keys in _GUARDED.items():
        append_only.create_replace_guard(table, keys)

    op.create_table(
        "record_chain",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("table_name", sa.String(length=32), nullable=False),
        sa.Column("row_id", sa.Integer(), nullable=False),
        sa.Column("row_sha256", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_record_chain")),
        sa.UniqueConstraint("table_name", "row_id", name="uq_record_chain_table_name_row_id"),
    )
    append_only.create_guard("record_chain")
    append_only.create_replace_guard("record_chain", ("seq",))

    with op.batch_alter_table("fractions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("image_number", sa.Integer(), nullable=False, server_default="1")
        )
    _number_repeat_images()
    with op.batch_alter_table("fractions", schema=None) as batch_op:
        batch_op.create_index(
            "uq_fractions_course_id_fraction_number",
            ["course_id", "fraction_number", "image_number"],
            unique=True,
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_at")
    with op.batch_alter_table("fractions", schema=None) as batch_op:
        batch_op.drop_index("uq_fractions_course_id_fraction_number")
        batch_op.drop_column("image_number")
    append_only.drop_replace_guard("record_chain")
    append_only.drop_guard("record_chain")
    op.drop_table("record_chain")
    for table in _GUARDED:
        append_only.drop_replace_guard(table)


def _number_repeat_images() -> None:
    """Images already stored with a repeated fraction number (repeat or verification MVCTs)
    become images 2, 3 … of that number, in the order they were received; the fraction number
    itself, which was signed, is unchanged."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT id, course_id, fraction_number FROM fractions "
            "ORDER BY course_id, fraction_number, created_at, id"
        )
    ).all()
    seen: dict[tuple[int, int], int] = {}
    for fraction_id, course_id, number in rows:
        image = seen.get((course_id, number), 0) + 1
        seen[(course_id, number)] = image
        if image > 1:
            bind.execute(
                sa.text("UPDATE fractions SET image_number = :image WHERE id = :id"),
                {"image": image, "id": fraction_id},
            )

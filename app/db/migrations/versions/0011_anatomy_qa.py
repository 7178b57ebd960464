"""anatomy-change figures and alert settings, acknowledgements, daily imaging QA courses

Revision ID: 0011
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.db import append_only

revision = "0011"
down_revision = "0005"
branch_labels = None
depends_on = None

_OFFSET_AXES = ("lateral_mm", "longitudinal_mm", "vertical_mm", "pitch_deg", "roll_deg", "yaw_deg")


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}")
    )


def upgrade() -> None:
    op.create_table(
        "fraction_figures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fraction_id", sa.Integer(), nullable=False),
        sa.Column("anatomy", sa.JSON(), nullable=True),
        sa.Column("phantom", sa.JSON(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _fk("fraction_figures", "fraction_id", "fractions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fraction_figures")),
        sa.UniqueConstraint("fraction_id", name=op.f("uq_fraction_figures_fraction_id")),
    )
    op.create_table(
        "anatomy_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        _fk("anatomy_settings", "course_id", "courses"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_anatomy_settings")),
        sa.UniqueConstraint("course_id", name=op.f("uq_anatomy_settings_course_id")),
    )
    op.create_table(
        "acknowledgements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fraction_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("printed_name", sa.String(length=200), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        _fk("acknowledgements", "fraction_id", "fractions"),
        _fk("acknowledgements", "user_id", "users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acknowledgements")),
    )
    op.create_index(
        op.f("ix_acknowledgements_fraction_id"), "acknowledgements", ["fraction_id"], unique=False
    )
    op.create_table(
        "qa_courses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("machine", sa.String(length=64), nullable=False),
        sa.Column("treats_srs_sbrt", sa.Boolean(), nullable=False),
        sa.Column("translation_tolerance_mm", sa.Float(), nullable=False),
        sa.Column("rotation_tolerance_deg", sa.Float(), nullable=False),
        sa.Column("baseline", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        _fk("qa_courses", "course_id", "courses"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qa_courses")),
        sa.UniqueConstraint("course_id", name=op.f("uq_qa_courses_course_id")),
        sa.UniqueConstraint("machine", name=op.f("uq_qa_courses_machine")),
    )
    op.create_table(
        "qa_offsets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fraction_id", sa.Integer(), nullable=False),
        *(sa.Column(axis, sa.Float(), nullable=False) for axis in _OFFSET_AXES),
        sa.Column("entered_by", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        _fk("qa_offsets", "fraction_id", "fractions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qa_offsets")),
    )
    op.create_index(op.f("ix_qa_offsets_fraction_id"), "qa_offsets", ["fraction_id"], unique=False)
    append_only.create_guard("acknowledgements")
    append_only.create_guard("qa_offsets")


def downgrade() -> None:
    append_only.drop_guard("qa_offsets")
    append_only.drop_guard("acknowledgements")
    op.drop_index(op.f("ix_qa_offsets_fraction_id"), table_name="qa_offsets")
    op.drop_table("qa_offsets")
    op.drop_table("qa_courses")
    op.drop_index(op.f("ix_acknowledgements_fraction_id"), table_name="acknowledgements")
    op.drop_table("acknowledgements")
    op.drop_table("anatomy_settings")
    op.drop_table("fraction_figures")

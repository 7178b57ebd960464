"""planning package: RT Structure Sets and RT Plans of a course, isocentre source, residuals

Revision ID: 0009
Revises: 0010 (the head after machine profiles; planapp first followed 0006)

``planning_objects`` holds a course's RT objects; courses gain the match-structure and residual
warning settings, fractions where their isocentre came from and which RT objects they used,
registration results the residuals per structure. Existing rows get the defaults (no structure
to match, 15 mm match margin, 3 mm PRV margin, the default serial organ names, no residuals).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0010"
branch_labels = None
depends_on = None

SERIAL_OAR_NAMES = "cord,brainstem,brain stem,optic,chiasm"


def upgrade() -> None:
    op.create_table(
        "planning_objects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("frame_of_reference_uid", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("approval_status", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"], ["courses.id"], name=op.f("fk_planning_objects_course_id_courses")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_planning_objects")),
        sa.UniqueConstraint(
            "course_id", "kind", "content_sha256", name="uq_planning_objects_course_kind_sha"
        ),
        sa.CheckConstraint("kind IN ('rtstruct', 'rtplan')", name=op.f("ck_planning_objects_kind")),
    )
    op.create_index(
        op.f("ix_planning_objects_course_id"), "planning_objects", ["course_id"], unique=False
    )
    op.create_index(
        op.f("ix_planning_objects_content_sha256"),
        "planning_objects",
        ["content_sha256"],
        unique=False,
    )
    op.add_column("courses", sa.Column("match_structure", sa.String(length=64), nullable=True))
    op.add_column(
        "courses",
        sa.Column("match_margin_mm", sa.Float(), nullable=False, server_default="15"),
    )
    op.add_column(
        "courses", sa.Column("prv_margin_mm", sa.Float(), nullable=False, server_default="3")
    )
    op.add_column(
        "courses",
        sa.Column(
            "serial_oar_names",
            sa.String(length=400),
            nullable=False,
            server_default=SERIAL_OAR_NAMES,
        ),
    )
    op.add_column("fractions", sa.Column("isocenter_source", sa.String(length=16), nullable=True))
    op.add_column("fractions", sa.Column("rtstruct_id", sa.Integer(), nullable=True))
    op.add_column("fractions", sa.Column("rtplan_id", sa.Integer(), nullable=True))
    op.add_column(
        "fractions",
        sa.Column("planning_warnings", sa.JSON(), nullable=False, server_default="[]"),
    )
    op.add_column(
        "registration_results",
        sa.Column("residuals", sa.JSON(), nullable=False, server_default="[]"),
    )


def downgrade() -> None:
    op.drop_column("registration_results", "residuals")
    for column in ("planning_warnings", "rtplan_id", "rtstruct_id", "isocenter_source"):
        op.drop_column("fractions", column)
    for column in ("serial_oar_names", "prv_margin_mm", "match_margin_mm", "match_structure"):
        op.drop_column("courses", column)
    op.drop_index(op.f("ix_planning_objects_content_sha256"), table_name="planning_objects")
    op.drop_index(op.f("ix_planning_objects_course_id"), table_name="planning_objects")
    op.drop_table("planning_objects")

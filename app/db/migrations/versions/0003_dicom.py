"""DICOM ingest: received instances, series grouping, REG exports

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dicom_series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("series_description", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("sender", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("n_instances", sa.Integer(), nullable=False),
        sa.Column("n_late", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=True),
        sa.Column("fraction_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"], ["courses.id"], name=op.f("fk_dicom_series_course_id_courses")
        ),
        sa.ForeignKeyConstraint(
            ["fraction_id"], ["fractions.id"], name=op.f("fk_dicom_series_fraction_id_fractions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_series")),
        sa.UniqueConstraint(
            "series_instance_uid", name=op.f("uq_dicom_series_series_instance_uid")
        ),
        sa.CheckConstraint(
            "kind IN ('planning', 'mvct', 'ignored')", name=op.f("ck_dicom_series_kind")
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'waiting', 'done', 'failed', 'ignored')",
            name=op.f("ck_dicom_series_state"),
        ),
    )
    with op.batch_alter_table("dicom_series", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dicom_series_patient_id"), ["patient_id"])
        batch_op.create_index(batch_op.f("ix_dicom_series_state"), ["state"])

    op.create_table(
        "dicom_instances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("series_description", sa.String(length=200), nullable=False),
        sa.Column("position_z_mm", sa.Float(), nullable=True),
        sa.Column("transfer_syntax_uid", sa.String(length=64), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("sender", sa.String(length=100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["series_id"], ["dicom_series.id"], name=op.f("fk_dicom_instances_series_id_dicom_series")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_instances")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_dicom_instances_sop_instance_uid")),
    )
    with op.batch_alter_table("dicom_instances", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dicom_instances_series_instance_uid"), ["series_instance_uid"]
        )
        batch_op.create_index(batch_op.f("ix_dicom_instances_received_at"), ["received_at"])
        batch_op.create_index(batch_op.f("ix_dicom_instances_series_id"), ["series_id"])

    op.create_table(
        "dicom_reg_exports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fraction_id", sa.Integer(), nullable=False),
        sa.Column("signoff_id", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(length=200), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["fraction_id"], ["fractions.id"], name=op.f("fk_dicom_reg_exports_fraction_id_fractions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_reg_exports")),
        sa.UniqueConstraint(
            "signoff_id", "destination", name=op.f("uq_dicom_reg_exports_signoff_id")
        ),
        sa.CheckConstraint("status IN ('sent', 'failed')", name=op.f("ck_dicom_reg_exports_status")),
    )
    with op.batch_alter_table("dicom_reg_exports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dicom_reg_exports_fraction_id"), ["fraction_id"])


def downgrade() -> None:
    with op.batch_alter_table("dicom_reg_exports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dicom_reg_exports_fraction_id"))
    op.drop_table("dicom_reg_exports")
    with op.batch_alter_table("dicom_instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dicom_instances_series_id"))
        batch_op.drop_index(batch_op.f("ix_dicom_instances_received_at"))
        batch_op.drop_index(batch_op.f("ix_dicom_instances_series_instance_uid"))
    op.drop_table("dicom_instances")
    with op.batch_alter_table("dicom_series", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dicom_series_state"))
        batch_op.drop_index(batch_op.f("ix_dicom_series_patient_id"))
    op.drop_table("dicom_series")

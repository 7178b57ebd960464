"""unassigned DICOM series; patient name and birth date of stored series

Revision ID: 0007
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dicom_unassigned",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("resolved_by", sa.String(length=100), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["dicom_series.id"],
            name=op.f("fk_dicom_unassigned_series_id_dicom_series"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_unassigned")),
        sa.UniqueConstraint("series_id", name=op.f("uq_dicom_unassigned_series_id")),
        sa.CheckConstraint(
            "resolution IN ('planning', 'mvct', 'discarded')",
            name=op.f("ck_dicom_unassigned_resolution"),
        ),
    )
    with op.batch_alter_table("dicom_unassigned", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dicom_unassigned_patient_id"), ["patient_id"])
        batch_op.create_index(batch_op.f("ix_dicom_unassigned_resolution"), ["resolution"])
    # plain ADD COLUMN (no table copy): image_series keeps its rows and references
    op.add_column(
        "image_series",
        sa.Column("patient_name", sa.String(length=200), nullable=False, server_default=""),
    )
    op.add_column(
        "image_series",
        sa.Column("patient_birth_date", sa.String(length=8), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_column("image_series", "patient_birth_date")
    op.drop_column("image_series", "patient_name")
    op.drop_table("dicom_unassigned")

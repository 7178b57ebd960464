"""sign-in attempts (atomic rate limit), signatures name what they supersede, REG withdrawals

Revision ID: 0006
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("client", sa.String(length=100), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("audited", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_attempts")),
        sa.CheckConstraint(
            "state IN ('pending', 'failed', 'reset', 'refused')",
            name=op.f("ck_sign_in_attempts_state"),
        ),
    )
    with op.batch_alter_table("sign_in_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sign_in_attempts_at"), ["at"])
        batch_op.create_index(batch_op.f("ix_sign_in_attempts_subject"), ["subject"])
        batch_op.create_index(batch_op.f("ix_sign_in_attempts_client"), ["client"])

    # ADD COLUMN keeps the append-only triggers of signoffs (a batch copy would drop them)
    op.add_column("signoffs", sa.Column("supersedes_id", sa.Integer(), nullable=True))

    op.create_table(
        "dicom_reg_withdrawals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reg_export_id", sa.Integer(), nullable=False),
        sa.Column("superseded_by_signoff_id", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reg_export_id"],
            ["dicom_reg_exports.id"],
            name=op.f("fk_dicom_reg_withdrawals_reg_export_id_dicom_reg_exports"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_reg_withdrawals")),
        sa.UniqueConstraint("reg_export_id", name="uq_dicom_reg_withdrawals_reg_export_id"),
        sa.CheckConstraint("status IN ('sent', 'failed')", name=op.f("ck_dicom_reg_withdrawals_status")),
    )


def downgrade() -> None:
    op.drop_table("dicom_reg_withdrawals")
    op.drop_column("signoffs", "supersedes_id")
    op.drop_table("sign_in_attempts")

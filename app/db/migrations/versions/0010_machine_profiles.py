"""machine profiles (seeded with the shipped ones), the course's machine and bore axis, the
fraction's station name, profile snapshot and verification link

Revision ID: 0010
Revises: 0006

Columns are added, never rebuilt (SQLite cannot rebuild tables that others reference, see 0005),
so ``fractions.verifies_fraction_id`` carries no foreign-key constraint; the use case checks it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from registration.machine import SHIPPED_PROFILES

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    profiles = op.create_table(
        "machine_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("profile", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_machine_profiles")),
        sa.UniqueConstraint("name", name=op.f("uq_machine_profiles_name")),
    )
    now = datetime.now(UTC)
    if op.get_bind().dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    op.bulk_insert(
        profiles,
        [
            {"name": p.name, "profile": p.to_dict(), "updated_at": now, "updated_by": "migration"}
            for p in SHIPPED_PROFILES
        ],
    )
    op.add_column("courses", sa.Column("machine_profile_name", sa.String(100), nullable=True))
    for axis in "xyz":
        op.add_column("courses", sa.Column(f"rotation_axis_{axis}_mm", sa.Float(), nullable=True))
    op.add_column(
        "fractions",
        sa.Column("station_name", sa.String(64), nullable=False, server_default=""),
    )
    op.add_column("fractions", sa.Column("machine_profile", sa.JSON(), nullable=True))
    op.add_column("fractions", sa.Column("verifies_fraction_id", sa.Integer(), nullable=True))
    op.create_index(
        op.f("ix_fractions_verifies_fraction_id"), "fractions", ["verifies_fraction_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_fractions_verifies_fraction_id"), table_name="fractions")
    with op.batch_alter_table("fractions") as batch:
        batch.drop_column("verifies_fraction_id")
        batch.drop_column("machine_profile")
        batch.drop_column("station_name")
    with op.batch_alter_table("courses") as batch:
        for axis in "xyz":
            batch.drop_column(f"rotation_axis_{axis}_mm")
        batch.drop_column("machine_profile_name")
    op.drop_table("machine_profiles")

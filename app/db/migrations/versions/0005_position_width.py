"""patient position columns wide enough for every DICOM Patient Position code (HFDL, FFDR …)

Revision ID: 0005
Revises: 0004

SQLite does not enforce a VARCHAR length and could only change the declared one by rebuilding
two tables that other rows point at (with foreign keys on, SQLite refuses to drop them, even
deferred), so SQLite keeps the declared VARCHAR(3) (the model declares it too, see
``app.db.models.POSITION_LENGTH``) and only servers that enforce lengths are altered.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TABLES = ("image_series", "courses")


def _resize(old: int, new: int) -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table in _TABLES:
        op.alter_column(
            table,
            "patient_position",
            existing_type=sa.String(old),
            type_=sa.String(new),
            existing_nullable=False,
        )


def upgrade() -> None:
    _resize(3, 8)


def downgrade() -> None:
    _resize(8, 3)

"""sign-off: browser sessions, signatures (append-only)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved so parallel work keeps one linear history; filled in by its issue


def downgrade() -> None:
    pass

"""scale-out: queue bookkeeping, sign-in rate limiting

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved so parallel work keeps one linear history; filled in by its issue


def downgrade() -> None:
    pass

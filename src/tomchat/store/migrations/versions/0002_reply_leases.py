"""reply leases: one reply per room across processes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tomchat.store.schema import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reply_leases",
        sa.Column("room_id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("node", sa.String(100), nullable=True),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("expires_at", UTCDateTime, nullable=True),
        sa.Column("stop_message_id", sa.String(64), nullable=True),
    )
    # The watchdog looks at held leases only (released ones have no expiry).
    op.create_index("ix_reply_leases_expires_at", "reply_leases", ["expires_at"])


def downgrade() -> None:
    op.drop_table("reply_leases")

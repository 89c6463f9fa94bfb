"""people: names bound to member keys, room hosts, locked rooms

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tomchat.store.schema import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "room_members",
        sa.Column("room_id", sa.String(64), primary_key=True),
        sa.Column("name_key", sa.String(200), primary_key=True),
        sa.Column("username", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("barred", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_room_members_key", "room_members", ["room_id", "key_hash"])
    op.create_table(
        "room_hosts",
        sa.Column("room_id", sa.String(64), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=True),
        sa.Column("key_hash", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    # Rooms written before locking existed were never locked.
    op.add_column(
        "streams", sa.Column("locked", sa.Boolean, nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    op.drop_column("streams", "locked")
    op.drop_table("room_hosts")
    op.drop_index("ix_room_members_key", "room_members")
    op.drop_table("room_members")

"""private rooms: room_access (invite token digests), messages.audio_url index

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tomchat.store.schema import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "room_access",
        sa.Column("room_id", sa.String(64), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    # GET /media/{name} of a private room looks up the room by the file's URL.
    op.create_index("ix_messages_audio_url", "messages", ["audio_url"])


def downgrade() -> None:
    op.drop_index("ix_messages_audio_url", "messages")
    op.drop_table("room_access")

"""the cast: the characters library, avatars, rooms' casts, replies' characters

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tomchat.store.schema import UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "characters",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("system_prompt", sa.Text, nullable=False),
        sa.Column("greeting", sa.Text, nullable=False),
        sa.Column("voice", sa.String(200), nullable=True),
        sa.Column("example_dialogue", sa.Text, nullable=False),
        sa.Column("avatar_digest", sa.String(64), nullable=True),
        sa.Column("avatar_type", sa.String(40), nullable=True),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("archived", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_characters_archived_name", "characters", ["archived", "name"])
    op.create_table(
        "character_avatars",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("content_type", sa.String(40), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    # Rooms written before casts keep NULL here: readers fall back to ``character`` (the
    # same cast the codec's upcaster gives their room.created).
    with op.batch_alter_table("streams") as batch:
        batch.add_column(sa.Column("cast", sa.Text, nullable=True))
        batch.add_column(sa.Column("reply_mode", sa.String(10), nullable=True))
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("character_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("character_id")
    with op.batch_alter_table("streams") as batch:
        batch.drop_column("reply_mode")
        batch.drop_column("cast")
    op.drop_table("character_avatars")
    op.drop_index("ix_characters_archived_name", "characters")
    op.drop_table("characters")

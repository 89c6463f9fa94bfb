"""the tree: messages.edited, deleted, alternative_of, shown

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows written before the tree are unedited, not deleted, and shown (no slots existed).
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("edited", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(
            sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("alternative_of", sa.String(64), nullable=True))
        batch.add_column(sa.Column("shown", sa.Boolean, nullable=False, server_default=sa.true()))
    op.create_index("ix_messages_alternative_of", "messages", ["alternative_of"])


def downgrade() -> None:
    op.drop_index("ix_messages_alternative_of", "messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("shown")
        batch.drop_column("alternative_of")
        batch.drop_column("deleted")
        batch.drop_column("edited")

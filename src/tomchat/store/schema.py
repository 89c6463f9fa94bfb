"""The tables (SQLAlchemy Core). Migrations in ``migrations/`` create the same shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    false,
    true,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps them naive on disk)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

Position = BigInteger().with_variant(Integer, "sqlite")  # SQLite: alias of the rowid

streams = Table(
    "streams",
    metadata,
    Column("room_id", String(64), primary_key=True),
    Column("version", Integer, nullable=False, default=0),
    Column("name", String(200), nullable=True),
    Column("character", String(200), nullable=True),
    Column("created_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=True),
)

events = Table(
    "events",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("room_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("type", String(40), nullable=False),
    Column("data", Text, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    UniqueConstraint("room_id", "version", name="uq_events_room_version"),
)


def messages_table(name: str, meta: MetaData) -> Table:
    """The transcript projection; ``projections rebuild`` fills a twin of it."""
    return Table(
        name,
        meta,
        Column("id", String(64), primary_key=True),
        Column("room_id", String(64), nullable=False),
        Column("author", String(200), nullable=False),
        Column("is_ai", Boolean, nullable=False),
        Column("content", Text, nullable=False),
        Column("status", String(20), nullable=False),
        Column("source", String(10), nullable=False),
        Column("audio_url", Text, nullable=True),
        Column("created_at", UTCDateTime, nullable=False),
        Column("completed_at", UTCDateTime, nullable=True),
        Column("first_version", Integer, nullable=False),
        Column("last_version", Integer, nullable=False),
        # The tree (revision 0006): edits, deletions and regenerated alternatives.
        Column("edited", Boolean, nullable=False, default=False, server_default=false()),
        Column("deleted", Boolean, nullable=False, default=False, server_default=false()),
        Column("alternative_of", String(64), nullable=True),
        Column("shown", Boolean, nullable=False, default=True, server_default=true()),
        Index(f"ix_{name}_room_version", "room_id", "first_version"),
        Index(f"ix_{name}_room_status", "room_id", "status"),
        # Serving a file of a private room asks which room's messages play it.
        Index(f"ix_{name}_audio_url", "audio_url"),
        # A slot's alternatives, found when one is chosen or a new one starts.
        Index(f"ix_{name}_alternative_of", "alternative_of"),
    )


messages = messages_table("messages", metadata)

# Private rooms (``tomchat.chat.access``): the SHA-256 of the invite token, never the token.
# Not a projection: the log holds nothing secret, and a rebuild leaves this table alone.
room_access = Table(
    "room_access",
    metadata,
    Column("room_id", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Who may write a room's reply now (``tomchat.store.leases``): one row per room that ever had a
# reply loop. ``owner`` NULL means free; a held lease expires unless its owner renews it.
reply_leases = Table(
    "reply_leases",
    metadata,
    Column("room_id", String(64), primary_key=True),
    Column("owner", String(200), nullable=True),
    Column("node", String(100), nullable=True),  # boot id / pid namespace: see leases.py
    Column("pid", Integer, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("stop_message_id", String(64), nullable=True),  # a stop asked of another process
    Index("ix_reply_leases_expires_at", "expires_at"),
)

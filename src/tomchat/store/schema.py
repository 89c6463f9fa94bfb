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
    LargeBinary,
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
    # room.locked, projected: a join reads it without scanning the room's log.
    Column("locked", Boolean, nullable=False, default=False, server_default=false()),
    # The room's cast as JSON ``[{id, name, revision}]`` and its reply mode (projected from
    # room.created / room.cast_changed; NULL in a character's own stream).
    Column("cast", Text, nullable=True),
    Column("reply_mode", String(10), nullable=True),
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
        Column("character_id", String(64), nullable=True),  # a reply's character (library id)
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

# Names bound to people (``tomchat.chat.identity``): per room, a name's canonical form and the
# SHA-256 of the member key that first used it. Secrets' digests: never in the log or exports.
room_members = Table(
    "room_members",
    metadata,
    Column("room_id", String(64), primary_key=True),
    Column("name_key", String(200), primary_key=True),  # canonical_name(username)
    Column("username", String(200), nullable=False),  # as first written
    Column("key_hash", String(64), nullable=False),
    Column("barred", Boolean, nullable=False, default=False),  # kicked: may not come back
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_room_members_key", "room_id", "key_hash"),
)

# Who hosts a room: the digest of the host token (POST /api/rooms, ``tomchat rooms host``) and
# of the creator's member key (a room made by joinRoom). Rooms older than hosts have no row.
room_hosts = Table(
    "room_hosts",
    metadata,
    Column("room_id", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=True),
    Column("key_hash", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# The character library (projected from each character's own stream ``character:<id>``).
characters = Table(
    "characters",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("system_prompt", Text, nullable=False),
    Column("greeting", Text, nullable=False),
    Column("voice", String(200), nullable=True),
    Column("example_dialogue", Text, nullable=False),
    Column("avatar_digest", String(64), nullable=True),
    Column("avatar_type", String(40), nullable=True),
    Column("revision", Integer, nullable=False),
    Column("archived", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_characters_archived_name", "archived", "name"),
)

# Avatar pictures by the SHA-256 of their bytes, which the log's events name. Written before
# the event that names them; content-addressed, so a write whose event failed costs nothing.
character_avatars = Table(
    "character_avatars",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("content_type", String(40), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

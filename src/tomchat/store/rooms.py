"""Reads of rooms and transcripts: the catch-up snapshot, pages, and the reply queue."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import and_, exists, false, func, or_, select, true
from sqlalchemy.engine import Connection

from tomchat.domain.character import CHARACTER_STREAM_PREFIX, is_character_stream, slug
from tomchat.domain.codec import decode_event
from tomchat.domain.events import (
    CastMember,
    MemorySummarized,
    RecordedEvent,
    ReplyChunk,
    ReplyCompleted,
    ReplyMode,
    event_type,
)
from tomchat.domain.transcript import STREAMING, MessageRow
from tomchat.store.database import Database
from tomchat.store.reads import head_of_sync, read_events_sync
from tomchat.store.schema import events, messages, reply_leases, room_access, streams


@dataclass(frozen=True, slots=True)
class RoomInfo:
    id: str
    name: str | None
    character: str | None
    version: int
    created_at: datetime | None
    updated_at: datetime | None
    locked: bool = False  # room.locked: no new names may join
    cast: tuple[CastMember, ...] = ()
    reply_mode: ReplyMode = "single"


@dataclass(frozen=True, slots=True)
class TokenTotals:
    """What a room's replies cost, as far as the providers reported it."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    replies_counted: int = 0  # replies whose provider reported usage


_COMPLETED = event_type(ReplyCompleted(message_id="", content="", status="complete"))
_SUMMARIZED = event_type(MemorySummarized(character_id=None, through_version=0, summary=""))


@dataclass(frozen=True, slots=True)
class StreamingReply:
    row: MessageRow
    text: str  # exactly the chunks with version <= the snapshot's version


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    messages: list[MessageRow]
    streaming: list[StreamingReply]
    has_more: bool


@dataclass(frozen=True, slots=True)
class ReplyQueue:
    """A room's reply queue and the model's context, both at one version."""

    version: int
    pending: list[MessageRow]  # user messages after the last reply started, oldest first
    history: list[MessageRow]  # the latest messages, oldest first: every pending one too


@dataclass(frozen=True, slots=True)
class CatchUp:
    version: int
    events: list[RecordedEvent]


# How far a room's log was searched for its summary, and the summary's version if found.
MemorySeen = tuple[int, int | None]


class RoomReader:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def room(self, room_id: str) -> RoomInfo | None:
        if is_character_stream(room_id):
            return None  # a character's stream is never a room
        query = select(streams).where(streams.c.room_id == room_id)
        row = await self.db.read_short(lambda conn: conn.execute(query).first())
        return _room(row) if row is not None and row.version > 0 else None

    async def rooms(self, limit: int = 200) -> list[RoomInfo]:
        query = (
            select(streams)
            .where(
                streams.c.version > 0,
                # The library's streams share the table; no room id has a colon.
                ~streams.c.room_id.startswith(CHARACTER_STREAM_PREFIX, autoescape=True),
            )
            .order_by(streams.c.updated_at.desc(), streams.c.room_id)
            .limit(limit)
        )
        return await self.db.read_short(lambda conn: [_room(row) for row in conn.execute(query)])

    async def rooms_page(
        self, limit: int, after: tuple[datetime, str] | None = None
    ) -> tuple[list[RoomInfo], tuple[datetime, str] | None]:
        """Public rooms, most recently active first, ``limit`` at a time, after the key
        ``(updated_at, room_id)`` of the previous page's last room; and this page's key for
        the next one (None on the last page).

        Keyset paging: each page costs the same however deep it is. A room written while a
        client pages moves to the first page, so it may be seen twice or on the first page
        only, never lost for good. Private rooms are left out here, so pages come full.
        """
        s = streams
        query = (
            select(s)
            .where(
                s.c.version > 0,
                ~exists().where(room_access.c.room_id == s.c.room_id),
                # The library's streams share the table; no room id has a colon.
                ~s.c.room_id.startswith(CHARACTER_STREAM_PREFIX, autoescape=True),
            )
            .order_by(s.c.updated_at.desc(), s.c.room_id)
            .limit(limit + 1)
        )
        if after is not None:
            at, room_id = after
            query = query.where(
                or_(s.c.updated_at < at, and_(s.c.updated_at == at, s.c.room_id > room_id))
            )
        rows = await self.db.read_short(lambda conn: [_room(row) for row in conn.execute(query)])
        page = rows[:limit]
        last = page[-1] if len(rows) > limit else None
        return page, (last.updated_at, last.id) if last and last.updated_at else None

    async def snapshot(self, room_id: str, page: int) -> Snapshot:
        """The room at one version H: its last page of messages and its replies in flight."""

        def read(conn: Connection) -> Snapshot:
            head = head_of_sync(conn, room_id) or 0
            rows, has_more = _page(conn, room_id, None, page, finished_only=True)
            streaming = [
                StreamingReply(row, _text_so_far(conn, row, head))
                for row in _streaming_rows(conn, room_id)
            ]
            return Snapshot(head, rows, streaming, has_more)

        return await self.db.read_short(read)

    async def catch_up(
        self, room_id: str, since: int, max_events: int, max_chars: int | None = None
    ) -> CatchUp | None:
        """The events after ``since``, or None when the client is too far behind for that:
        more than ``max_events`` events, or (if given) more than ``max_chars`` characters of
        stored event data, counted in the database before a single event is read."""

        def read(conn: Connection) -> CatchUp | None:
            head = head_of_sync(conn, room_id) or 0
            if head - since > max_events:
                return None
            if max_chars is not None and head > since:
                stored = select(func.coalesce(func.sum(func.length(events.c.data)), 0)).where(
                    events.c.room_id == room_id, events.c.version > since, events.c.version <= head
                )
                if int(conn.execute(stored).scalar_one()) > max_chars:
                    return None
            return CatchUp(head, read_events_sync(conn, room_id, since, upto=head))

        return await self.db.read_short(read)

    async def page(
        self, room_id: str, before: int | None, limit: int
    ) -> tuple[list[MessageRow], int | None]:
        """Messages whose first version is below ``before``, newest last, and the next cursor.

        A reply still streaming comes with its text so far (its row holds none yet).
        """

        def read(conn: Connection) -> tuple[list[MessageRow], bool]:
            rows, has_more = _page(conn, room_id, before, limit, finished_only=False)
            rows = [
                replace(r, content=_text_so_far(conn, r, None)) if r.status == STREAMING else r
                for r in rows
            ]
            return rows, has_more

        rows, has_more = await self.db.read_short(read)
        return rows, (rows[0].first_version if has_more and rows else None)

    async def recent(self, room_id: str, limit: int) -> list[MessageRow]:
        return await self.db.read_short(
            lambda conn: _page(conn, room_id, None, limit, finished_only=False)[0]
        )

    async def recent_at(self, room_id: str, limit: int) -> tuple[int, list[MessageRow]]:
        """The room's version and its latest ``limit`` messages, read in one snapshot."""

        def read(conn: Connection) -> tuple[int, list[MessageRow]]:
            head = head_of_sync(conn, room_id) or 0
            return head, _page(conn, room_id, None, limit, finished_only=False)[0]

        return await self.db.read_short(read)

    async def unanswered(self, room_id: str) -> list[MessageRow]:
        """User messages posted after the last reply started: the room's reply queue."""
        return await self.db.read_short(lambda conn: _unanswered(conn, room_id))

    async def queue(self, room_id: str, context: int) -> ReplyQueue:
        """The reply queue and the latest ``context`` messages (more if more wait) as of
        one version: a reply started at that version answers exactly what it was shown."""

        def read(conn: Connection) -> ReplyQueue:
            head = head_of_sync(conn, room_id) or 0
            pending = _unanswered(conn, room_id)
            history: list[MessageRow] = []
            if pending:
                # Everything after the last reply is pending, so these hold all of it.
                history, _ = _page(
                    conn, room_id, None, max(context, len(pending)), finished_only=False
                )
            return ReplyQueue(head, pending, history)

        return await self.db.read_short(read)

    async def token_totals(self, room_id: str) -> TokenTotals:
        query = select(events.c.type, events.c.data).where(
            events.c.room_id == room_id, events.c.type == _COMPLETED
        )
        prompt = completion = counted = 0
        for row in await self.db.read_short(lambda conn: conn.execute(query).all()):
            event = decode_event(row.type, row.data)
            if isinstance(event, ReplyCompleted) and event.usage is not None:
                counted += 1
                prompt += event.usage.prompt_tokens or 0
                completion += event.usage.completion_tokens or 0
        return TokenTotals(prompt, completion, counted)

    async def memory(
        self, room_id: str, seen: MemorySeen | None = None
    ) -> tuple[MemorySummarized | None, MemorySeen]:
        """The room's latest summary of its older turns, if one was written; and how far
        the log was searched for it, for the next call.

        The summary is looked for only among events after ``seen.checked`` (a range of the
        room's ``(room_id, version)`` index: the events since the last reply, not the whole
        log, which is mostly chunks). The summary found is read again by its version each
        time, so a deletion that emptied it (``domain.redaction``) is seen at once."""
        checked, latest = seen if seen is not None else (0, None)
        newest = (
            select(events.c.version)
            .where(
                events.c.room_id == room_id,
                events.c.version > checked,
                events.c.type == _SUMMARIZED,
            )
            .order_by(events.c.version.desc())
            .limit(1)
        )

        def read(conn: Connection) -> tuple[int, int | None, Any]:
            head = head_of_sync(conn, room_id) or 0
            found = conn.execute(newest).scalar_one_or_none()
            last = found if found is not None else latest
            if last is None:
                return head, None, None
            at = select(events.c.type, events.c.data).where(
                events.c.room_id == room_id, events.c.version == last
            )
            return head, last, conn.execute(at).first()

        head, latest, row = await self.db.read_short(read)
        if row is None:
            return None, (head, None)
        event = decode_event(row.type, row.data)
        summary = event if isinstance(event, MemorySummarized) else None
        return summary, (head, latest)

    async def since(self, room_id: str, version: int, limit: int) -> list[MessageRow]:
        """The newest ``limit`` messages that began after ``version``, oldest first."""
        query = (
            select(messages)
            .where(messages.c.room_id == room_id, messages.c.first_version > version)
            .order_by(messages.c.first_version.desc())
            .limit(limit)
        )
        rows = await self.db.read_short(lambda conn: [_message(row) for row in conn.execute(query)])
        return rows[::-1]

    async def message(self, message_id: str) -> MessageRow | None:
        query = select(messages).where(messages.c.id == message_id)
        row = await self.db.read_short(lambda conn: conn.execute(query).first())
        return _message(row) if row is not None else None

    async def streaming_replies_in(self, room_id: str) -> list[StreamingReply]:
        """The room's replies still streaming, each with every chunk committed so far."""
        return await self.db.read_short(
            lambda conn: [
                StreamingReply(row, _text_so_far(conn, row, None))
                for row in _streaming_rows(conn, room_id)
            ]
        )

    async def reply_text(self, room_id: str, message_id: str) -> str:
        """The text of reply ``message_id``'s chunks in the log (empty if it has none)."""
        query = select(messages).where(messages.c.id == message_id, messages.c.room_id == room_id)

        def read(conn: Connection) -> str:
            row = conn.execute(query).first()
            return _text_so_far(conn, _message(row), None) if row is not None else ""

        return await self.db.read_short(read)

    async def rooms_with_streaming_replies(self) -> list[str]:
        """Every room with a reply still streaming (a full scan: for start-up only)."""
        query = select(messages.c.room_id).where(messages.c.status == STREAMING).distinct()
        return await self.db.read_short(
            lambda conn: sorted(row.room_id for row in conn.execute(query))
        )

    async def unattended(self, within: float | None = None) -> list[str]:
        """Rooms that need a reply loop and have nobody holding their lease: a user message
        with no reply started after it, or a reply left streaming.

        A process that dies between committing a message and taking the room's lease leaves
        such a room; nothing else would look at it until someone posts again. ``within``:
        only rooms written in the last that many seconds (the watchdog's frequent look;
        None, at start-up, looks at every room).
        """
        s, m, lease = streams, messages, reply_leases
        last_user = (
            select(func.max(m.c.first_version))
            .where(m.c.room_id == s.c.room_id, m.c.is_ai.is_(false()))
            .scalar_subquery()
        )
        last_reply = (
            select(func.coalesce(func.max(m.c.first_version), 0))
            .where(m.c.room_id == s.c.room_id, m.c.is_ai.is_(true()))
            .scalar_subquery()
        )
        left_streaming = exists().where(m.c.room_id == s.c.room_id, m.c.status == STREAMING)
        # A live lease: its holder answers what waits when it lets go. An expired one, or a
        # dead holder's, is the watchdog's other look (``chat.leasing.takeovers``).
        held = exists().where(
            lease.c.room_id == s.c.room_id,
            lease.c.owner.is_not(None),
            lease.c.expires_at >= self.db.recorder.clock(),
        )
        query = select(s.c.room_id).where(
            s.c.version > 0, or_(last_user > last_reply, left_streaming), ~held
        )
        if within is not None:
            query = query.where(s.c.updated_at >= datetime.now(UTC) - timedelta(seconds=within))
        ordered = query.order_by(s.c.room_id)
        return await self.db.read_short(lambda conn: [row.room_id for row in conn.execute(ordered)])

    async def streaming_replies(self) -> list[StreamingReply]:
        """Every reply left streaming, in any room, with its text so far (for recovery)."""
        query = select(messages).where(messages.c.status == STREAMING)
        return await self.db.read_short(
            lambda conn: [
                StreamingReply(row, _text_so_far(conn, row, None))
                for row in (_message(r) for r in conn.execute(query))
            ]
        )


def _unanswered(conn: Connection, room_id: str) -> list[MessageRow]:
    last_reply = (
        select(func.coalesce(func.max(messages.c.first_version), 0))
        .where(messages.c.room_id == room_id, messages.c.is_ai.is_(True))
        .scalar_subquery()
    )
    query = (
        select(messages)
        .where(
            messages.c.room_id == room_id,
            messages.c.is_ai.is_(False),
            messages.c.first_version > last_reply,
        )
        .order_by(messages.c.first_version)
    )
    return [_message(row) for row in conn.execute(query)]


def _page(
    conn: Connection, room_id: str, before: int | None, limit: int, *, finished_only: bool
) -> tuple[list[MessageRow], bool]:
    conditions = [messages.c.room_id == room_id]
    if before is not None:
        conditions.append(messages.c.first_version < before)
    if finished_only:
        conditions.append(messages.c.status != STREAMING)
    query = (
        select(messages)
        .where(and_(*conditions))
        .order_by(messages.c.first_version.desc())
        .limit(limit + 1)
    )
    rows = [_message(r) for r in conn.execute(query)]
    has_more = len(rows) > limit
    return list(reversed(rows[:limit])), has_more


def _text_so_far(conn: Connection, reply: MessageRow, upto: int | None) -> str:
    # One reply streams per room, so the events since it started are nearly all its chunks:
    # the cost follows the reply's length, never the room's history.
    chunks = read_events_sync(conn, reply.room_id, reply.first_version, upto=upto)
    return "".join(
        e.event.text
        for e in chunks
        if isinstance(e.event, ReplyChunk) and e.event.message_id == reply.id
    )


def _streaming_rows(conn: Connection, room_id: str) -> list[MessageRow]:
    # Sorted here, not in SQL: with an ORDER BY first_version, SQLite walks the room's whole
    # (room_id, first_version) index to find the one or two streaming rows, so every join
    # would cost more the longer the room's history; this way it takes ix_messages_room_status.
    query = select(messages).where(messages.c.room_id == room_id, messages.c.status == STREAMING)
    rows = [_message(r) for r in conn.execute(query)]
    return sorted(rows, key=lambda row: row.first_version)


def _message(row: Any) -> MessageRow:
    return MessageRow(
        id=row.id,
        room_id=row.room_id,
        author=row.author,
        is_ai=row.is_ai,
        content=row.content,
        status=row.status,
        source=row.source,
        audio_url=row.audio_url,
        created_at=row.created_at,
        completed_at=row.completed_at,
        first_version=row.first_version,
        last_version=row.last_version,
        character_id=row.character_id,
        edited=bool(row.edited),
        deleted=bool(row.deleted),
        alternative_of=row.alternative_of,
        shown=bool(row.shown),
    )


_cast_decoder = msgspec.json.Decoder(tuple[CastMember, ...])


def room_cast(encoded: str | None, character: str | None) -> tuple[CastMember, ...]:
    """A room's cast as projected; a room from before casts has its one character."""
    if encoded:
        return _cast_decoder.decode(encoded)
    return (CastMember(slug(character), character),) if character else ()


def _room(row: Any) -> RoomInfo:
    return RoomInfo(
        id=row.room_id,
        name=row.name,
        character=row.character,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        locked=bool(row.locked),
        cast=room_cast(row.cast, row.character),
        reply_mode="all" if row.reply_mode == "all" else "single",
    )

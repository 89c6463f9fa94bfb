"""Reads of rooms and transcripts: the catch-up snapshot, pages, and the reply queue."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tomchat.domain.codec import decode_event
from tomchat.domain.events import (
    MemorySummarized,
    RecordedEvent,
    ReplyChunk,
    ReplyCompleted,
    event_type,
)
from tomchat.domain.transcript import STREAMING, MessageRow
from tomchat.store.database import Database
from tomchat.store.reads import head_of, read_events
from tomchat.store.schema import events, messages, streams


@dataclass(frozen=True, slots=True)
class RoomInfo:
    id: str
    name: str | None
    character: str | None
    version: int
    created_at: datetime | None
    updated_at: datetime | None


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
class CatchUp:
    version: int
    events: list[RecordedEvent]


class RoomReader:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def room(self, room_id: str) -> RoomInfo | None:
        async with self.db.snapshot() as conn:
            result = await conn.execute(select(streams).where(streams.c.room_id == room_id))
            row = result.first()
        return _room(row) if row is not None and row.version > 0 else None

    async def rooms(self, limit: int = 200) -> list[RoomInfo]:
        query = (
            select(streams)
            .where(streams.c.version > 0)
            .order_by(streams.c.updated_at.desc(), streams.c.room_id)
            .limit(limit)
        )
        async with self.db.snapshot() as conn:
            return [_room(row) for row in await conn.execute(query)]

    async def snapshot(self, room_id: str, page: int) -> Snapshot:
        """The room at one version H: its last page of messages and its replies in flight."""
        async with self.db.snapshot() as conn:
            head = await head_of(conn, room_id) or 0
            rows, has_more = await _page(conn, room_id, None, page, finished_only=True)
            streaming = []
            for row in await _streaming_rows(conn, room_id):
                streaming.append(StreamingReply(row, await _text_so_far(conn, row, head)))
        return Snapshot(head, rows, streaming, has_more)

    async def catch_up(self, room_id: str, since: int, max_events: int) -> CatchUp | None:
        """The events after ``since``, or None when the client is too far behind for that."""
        async with self.db.snapshot() as conn:
            head = await head_of(conn, room_id) or 0
            if head - since > max_events:
                return None
            return CatchUp(head, await read_events(conn, room_id, since, upto=head))

    async def page(
        self, room_id: str, before: int | None, limit: int
    ) -> tuple[list[MessageRow], int | None]:
        """Messages whose first version is below ``before``, newest last, and the next cursor.

        A reply still streaming comes with its text so far (its row holds none yet).
        """
        async with self.db.snapshot() as conn:
            rows, has_more = await _page(conn, room_id, before, limit, finished_only=False)
            rows = [
                replace(r, content=await _text_so_far(conn, r, None))
                if r.status == STREAMING
                else r
                for r in rows
            ]
        return rows, (rows[0].first_version if has_more and rows else None)

    async def recent(self, room_id: str, limit: int) -> list[MessageRow]:
        async with self.db.snapshot() as conn:
            rows, _ = await _page(conn, room_id, None, limit, finished_only=False)
        return rows

    async def unanswered(self, room_id: str) -> list[MessageRow]:
        """User messages posted after the last reply started: the room's reply queue."""
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
        async with self.db.snapshot() as conn:
            return [_message(row) for row in await conn.execute(query)]

    async def token_totals(self, room_id: str) -> TokenTotals:
        query = select(events.c.type, events.c.data).where(
            events.c.room_id == room_id, events.c.type == _COMPLETED
        )
        prompt = completion = counted = 0
        async with self.db.snapshot() as conn:
            for row in await conn.execute(query):
                event = decode_event(row.type, row.data)
                if isinstance(event, ReplyCompleted) and event.usage is not None:
                    counted += 1
                    prompt += event.usage.prompt_tokens or 0
                    completion += event.usage.completion_tokens or 0
        return TokenTotals(prompt, completion, counted)

    async def memory(self, room_id: str) -> MemorySummarized | None:
        """The room's latest summary of its older turns, if one was written."""
        query = (
            select(events.c.type, events.c.data)
            .where(events.c.room_id == room_id, events.c.type == _SUMMARIZED)
            .order_by(events.c.version.desc())
            .limit(1)
        )
        async with self.db.snapshot() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        event = decode_event(row.type, row.data)
        return event if isinstance(event, MemorySummarized) else None

    async def since(self, room_id: str, version: int, limit: int) -> list[MessageRow]:
        """The newest ``limit`` messages that began after ``version``, oldest first."""
        query = (
            select(messages)
            .where(messages.c.room_id == room_id, messages.c.first_version > version)
            .order_by(messages.c.first_version.desc())
            .limit(limit)
        )
        async with self.db.snapshot() as conn:
            rows = [_message(row) for row in await conn.execute(query)]
        return rows[::-1]

    async def message(self, message_id: str) -> MessageRow | None:
        async with self.db.snapshot() as conn:
            row = (await conn.execute(select(messages).where(messages.c.id == message_id))).first()
        return _message(row) if row is not None else None

    async def streaming_replies_in(self, room_id: str) -> list[StreamingReply]:
        """The room's replies still streaming, each with every chunk committed so far."""
        async with self.db.snapshot() as conn:
            rows = await _streaming_rows(conn, room_id)
            return [StreamingReply(row, await _text_so_far(conn, row, None)) for row in rows]

    async def rooms_with_streaming_replies(self) -> list[str]:
        """Every room with a reply still streaming (a full scan: for start-up only)."""
        query = select(messages.c.room_id).where(messages.c.status == STREAMING).distinct()
        async with self.db.snapshot() as conn:
            return sorted(row.room_id for row in await conn.execute(query))

    async def streaming_replies(self) -> list[StreamingReply]:
        """Every reply left streaming, in any room, with its text so far (for recovery)."""
        async with self.db.snapshot() as conn:
            query = select(messages).where(messages.c.status == STREAMING)
            rows = [_message(r) for r in await conn.execute(query)]
            return [StreamingReply(row, await _text_so_far(conn, row, None)) for row in rows]


async def _page(
    conn: AsyncConnection, room_id: str, before: int | None, limit: int, *, finished_only: bool
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
    rows = [_message(r) for r in await conn.execute(query)]
    has_more = len(rows) > limit
    return list(reversed(rows[:limit])), has_more


async def _text_so_far(conn: AsyncConnection, reply: MessageRow, upto: int | None) -> str:
    # One reply streams per room, so the events since it started are nearly all its chunks:
    # the cost follows the reply's length, never the room's history.
    chunks = await read_events(conn, reply.room_id, reply.first_version, upto=upto)
    return "".join(
        e.event.text
        for e in chunks
        if isinstance(e.event, ReplyChunk) and e.event.message_id == reply.id
    )


async def _streaming_rows(conn: AsyncConnection, room_id: str) -> list[MessageRow]:
    # Sorted here, not in SQL: with an ORDER BY first_version, SQLite walks the room's whole
    # (room_id, first_version) index to find the one or two streaming rows, so every join
    # would cost more the longer the room's history; this way it takes ix_messages_room_status.
    query = select(messages).where(messages.c.room_id == room_id, messages.c.status == STREAMING)
    rows = [_message(r) for r in await conn.execute(query)]
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
        edited=bool(row.edited),
        deleted=bool(row.deleted),
        alternative_of=row.alternative_of,
        shown=bool(row.shown),
    )


def _room(row: Any) -> RoomInfo:
    return RoomInfo(
        id=row.room_id,
        name=row.name,
        character=row.character,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )

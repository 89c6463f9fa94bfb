"""Whole-room reads for exports and replays, in pages, so memory stays flat at any size.

Every page is keyset-paginated (``first_version`` for messages, ``version`` for events;
never OFFSET) and read in its own short transaction: a slow download or a paced replay
never holds a database connection between pages. The export is fixed at the room's head
when it began: later messages are left out, and since projection rows are only ever added
(a reply's row changes status, never its place), every page sees the same set of messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime

from sqlalchemy import and_, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import NullType

from tomchat.domain.events import RecordedEvent
from tomchat.domain.limits import MAX_VERSION
from tomchat.domain.transcript import STREAMING, MessageRow
from tomchat.store.database import Database
from tomchat.store.reads import head_of, read_events
from tomchat.store.rooms import RoomInfo, _room, _text_so_far
from tomchat.store.schema import messages, streams

MESSAGE_PAGE = 2000  # rows: big enough that a query's own cost is small, ~3 MB at most
# Rows per page of an export streamed to a client (HTTP): what a stalled download pins is
# the page read ahead and the last one's bytes, so these pages are small (~0.5 MB of rows,
# ~100 kB of file); the export still runs far above 100,000 messages/s.
STREAM_PAGE = 500
EVENT_PAGE = 500


@dataclass(frozen=True, slots=True)
class Bound:
    """One end of an export's range: a room version or a time (both ends are inclusive)."""

    version: int | None = None
    at: datetime | None = None

    def __post_init__(self) -> None:
        if (self.version is None) == (self.at is None):
            raise ValueError("a bound is either a version or a time")


def parse_bound(name: str, raw: str | None) -> Bound | None:
    """A ``from``/``to`` value as people write it: a whole number is a room version, anything
    else an ISO 8601 time (UTC unless it says otherwise). ValueError names ``name``."""
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    # isdigit alone takes "²" and other digits int() refuses; huge numbers overflow SQL.
    if text.isascii() and text.isdigit():
        if len(text) > 16 or int(text) > MAX_VERSION:
            raise ValueError(f"{name} is past any room version: {raw[:32]!r}")
        return Bound(version=int(text))
    try:
        at = datetime.fromisoformat(text)
        return Bound(at=at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC))
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved past UTC
        raise ValueError(
            f"{name} must be a room version (a whole number) or an ISO 8601 time, not {raw[:64]!r}"
        ) from None


@dataclass(frozen=True, slots=True)
class Span:
    """Which messages an export covers, by the version or time at which each one began."""

    start: Bound | None = None
    end: Bound | None = None


@dataclass(frozen=True, slots=True)
class TranscriptSummary:
    """What an export knows before its first page: enough for a title and a progress bar."""

    room: RoomInfo
    version: int  # the room's head when the export began; nothing later is included
    count: int
    first_at: datetime | None
    last_at: datetime | None
    span: Span


class TranscriptReader:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def summary(self, room_id: str, span: Span = Span()) -> TranscriptSummary | None:
        """The room, its head and the size of the span; None if there is no such room."""
        async with self.db.snapshot() as conn:
            row = (await conn.execute(select(streams).where(streams.c.room_id == room_id))).first()
            if row is None or row.version == 0:
                return None
            query = select(
                func.count(), func.min(messages.c.created_at), func.max(messages.c.created_at)
            ).where(and_(*_message_filter(room_id, span, row.version)))
            count, first_at, last_at = (await conn.execute(query)).one()
        return TranscriptSummary(_room(row), row.version, count, first_at, last_at, span)

    async def message_pages(
        self, summary: TranscriptSummary, page_size: int = MESSAGE_PAGE
    ) -> AsyncIterator[list[MessageRow]]:
        """The span's messages in log order, ``page_size`` at a time.

        The next page is read while the caller formats this one: the database works in its
        own thread (SQLite) or server (PostgreSQL), so the two overlap. At most two pages
        are held at once.
        """
        conditions = _message_filter(summary.room.id, summary.span, summary.version)

        async def read(cursor: int) -> list[MessageRow]:
            query = (
                select(*_RAW_COLUMNS)
                .where(and_(*conditions, messages.c.first_version > cursor))
                .order_by(messages.c.first_version)
                .limit(page_size)
            )
            async with self.db.snapshot() as conn:
                rows = self.db.recorder.message_rows((await conn.execute(query)).all())
                for i, row in enumerate(rows):
                    if row.status == STREAMING:
                        rows[i] = await _with_text_so_far(conn, row, summary.version)
            return rows

        ahead = asyncio.create_task(read(0))
        try:
            while True:
                page = [await ahead]
                full = len(page[0]) == page_size
                if full:
                    ahead = asyncio.create_task(read(page[0][-1].first_version))
                if page[0]:
                    # Handed over, not kept: while a stalled client holds the stream here,
                    # this generator pins only the page read ahead, not the one it gave.
                    yield page.pop()
                if not full:
                    return
        finally:
            # The reader may stop early (a client that went away): no read left running.
            if not ahead.done():
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ahead

    async def event_pages(
        self,
        room_id: str,
        after: int = 0,
        upto: int | None = None,
        page_size: int = EVENT_PAGE,
    ) -> AsyncIterator[list[RecordedEvent]]:
        """The room's events after version ``after`` (up to ``upto``), ``page_size`` at a time."""
        cursor = after
        while upto is None or cursor < upto:
            async with self.db.snapshot() as conn:
                page = await read_events(conn, room_id, cursor, upto=upto, limit=page_size)
            if not page:
                return
            yield page
            if len(page) < page_size:
                return
            cursor = page[-1].version

    async def message_counts(self, room_ids: Sequence[str]) -> dict[str, int]:
        """How many messages (user messages and replies) each of these rooms holds."""
        if not room_ids:
            return {}
        query = (
            select(messages.c.room_id, func.count())
            .where(messages.c.room_id.in_(list(room_ids)))
            .group_by(messages.c.room_id)
        )
        async with self.db.snapshot() as conn:
            return {room: n for room, n in await conn.execute(query)}

    async def head(self, room_id: str) -> int | None:
        async with self.db.snapshot() as conn:
            return await head_of(conn, room_id)


# The export reads every row of a room, so the per-value conversions SQLAlchemy would run
# (a regular expression per SQLite datetime, then the UTC decorator) are most of its cost:
# these columns come back raw and the recorder converts them in one pass (``message_rows``).
_RAW_COLUMNS = [type_coerce(messages.c[f.name], NullType()) for f in fields(MessageRow)]


def _message_filter(room_id: str, span: Span, upto: int) -> list[ColumnElement[bool]]:
    # Of a slot's alternatives, exports hold the one it shows (the log keeps them all).
    conditions = [
        messages.c.room_id == room_id,
        messages.c.first_version <= upto,
        messages.c.shown.is_(True),
    ]
    if span.start is not None:
        if span.start.version is not None:
            conditions.append(messages.c.first_version >= span.start.version)
        else:
            conditions.append(messages.c.created_at >= span.start.at)
    if span.end is not None:
        if span.end.version is not None:
            conditions.append(messages.c.first_version <= span.end.version)
        else:
            conditions.append(messages.c.created_at <= span.end.at)
    return conditions


async def _with_text_so_far(conn: AsyncConnection, row: MessageRow, upto: int) -> MessageRow:
    # A reply still streaming has no text in its row; an export shows what it said so far,
    # as the catch-up snapshot does. At most one reply streams per room, so this is rare.
    if row.status != STREAMING:
        return row
    text = await conn.run_sync(lambda sync: _text_so_far(sync, row, upto))
    return replace(row, content=text)

"""Reads of the log in SQLAlchemy Core, the same on every backend.

Recorders answer ``read`` and ``head`` with these; the readers (``store.rooms``,
``store.transcripts``, ``store.rebuild``) run them inside a snapshot of their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tomchat.domain.codec import decode_event
from tomchat.domain.events import RecordedEvent
from tomchat.store.schema import events, streams

IN_CHUNK = 500  # ids per ``IN (…)``: well below every backend's limit on bound values


async def head_of(conn: AsyncConnection, room_id: str) -> int | None:
    result = await conn.execute(select(streams.c.version).where(streams.c.room_id == room_id))
    return result.scalar_one_or_none()


async def read_events(
    conn: AsyncConnection,
    room_id: str,
    after: int = 0,
    *,
    upto: int | None = None,
    limit: int | None = None,
) -> list[RecordedEvent]:
    query = (
        select(events)
        .where(events.c.room_id == room_id, events.c.version > after)
        .order_by(events.c.version)
    )
    if upto is not None:
        query = query.where(events.c.version <= upto)
    if limit is not None:
        query = query.limit(limit)
    result = await conn.execute(query)
    return [recorded_from_row(row) for row in result]


def recorded_from_row(row: Any) -> RecordedEvent:
    return RecordedEvent(
        position=row.position,
        room_id=row.room_id,
        version=row.version,
        event_id=row.event_id,
        recorded_at=row.recorded_at,
        event=decode_event(row.type, row.data),
    )


async def recorded_by_id(conn: AsyncConnection, ids: Iterable[UUID]) -> dict[UUID, RecordedEvent]:
    wanted = list(ids)
    found: dict[UUID, RecordedEvent] = {}
    for start in range(0, len(wanted), IN_CHUNK):
        result = await conn.execute(
            select(events).where(events.c.event_id.in_(wanted[start : start + IN_CHUNK]))
        )
        for row in result:
            found[row.event_id] = recorded_from_row(row)
    return found


def recorded_by_id_sync(conn: Connection, ids: Iterable[UUID]) -> dict[UUID, RecordedEvent]:
    """``recorded_by_id`` on a synchronous connection (the SQLite writer thread)."""
    wanted = list(ids)
    found: dict[UUID, RecordedEvent] = {}
    for start in range(0, len(wanted), IN_CHUNK):
        query = select(events).where(events.c.event_id.in_(wanted[start : start + IN_CHUNK]))
        for row in conn.execute(query):
            found[row.event_id] = recorded_from_row(row)
    return found

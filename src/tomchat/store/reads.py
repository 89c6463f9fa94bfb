"""Reads of the log in SQLAlchemy Core, the same on every backend.

Recorders answer ``read`` and ``head`` with these; the readers (``store.rooms``,
``store.transcripts``, ``store.rebuild``) run them inside a snapshot of their own — the
``_sync`` forms inside a short read (``Recorder.read_short``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tomchat.domain.codec import decode_event
from tomchat.domain.events import RecordedEvent
from tomchat.store.schema import events, streams

IN_CHUNK = 500  # ids per ``IN (…)``: well below every backend's limit on bound values


def _head_query(room_id: str) -> Select[Any]:
    return select(streams.c.version).where(streams.c.room_id == room_id)


def _events_query(room_id: str, after: int, upto: int | None, limit: int | None) -> Select[Any]:
    query = (
        select(events)
        .where(events.c.room_id == room_id, events.c.version > after)
        .order_by(events.c.version)
    )
    if upto is not None:
        query = query.where(events.c.version <= upto)
    if limit is not None:
        query = query.limit(limit)
    return query


async def head_of(conn: AsyncConnection, room_id: str) -> int | None:
    head: int | None = (await conn.execute(_head_query(room_id))).scalar_one_or_none()
    return head


def head_of_sync(conn: Connection, room_id: str) -> int | None:
    """``head_of`` on a synchronous connection (``Recorder.read_short``)."""
    head: int | None = conn.execute(_head_query(room_id)).scalar_one_or_none()
    return head


async def read_events(
    conn: AsyncConnection,
    room_id: str,
    after: int = 0,
    *,
    upto: int | None = None,
    limit: int | None = None,
) -> list[RecordedEvent]:
    result = await conn.execute(_events_query(room_id, after, upto, limit))
    return [recorded_from_row(row) for row in result]


def read_events_sync(
    conn: Connection,
    room_id: str,
    after: int = 0,
    *,
    upto: int | None = None,
    limit: int | None = None,
) -> list[RecordedEvent]:
    """``read_events`` on a synchronous connection (``Recorder.read_short``)."""
    return [
        recorded_from_row(row) for row in conn.execute(_events_query(room_id, after, upto, limit))
    ]


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

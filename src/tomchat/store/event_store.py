"""``EventStore``: the append-only log with group commit.

One appender task takes every append waiting in the queue, from every room, and writes them
in one transaction; each caller's future resolves with its recorded events after commit.
Listeners hear about new events after commit, in commit order: that is the only way events
reach clients, so nobody can see what is not yet durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from tomchat import metrics
from tomchat.domain.codec import decode_event, encode_data
from tomchat.domain.events import Event, NewEvent, RecordedEvent, event_type
from tomchat.store import sqlite_writer
from tomchat.store.database import Database, StoreUnavailable
from tomchat.store.projection import project, project_sync
from tomchat.store.schema import events, reply_leases, streams
from tomchat.store.sqlite_writer import SqliteWriter

log = logging.getLogger(__name__)

Listener = Callable[[Sequence[RecordedEvent]], None]


class AppendConflict(Exception):
    """The append contradicts what the log already holds; retrying it will not help."""


class ConcurrencyError(AppendConflict):
    def __init__(self, room_id: str, expected: int, actual: int) -> None:
        super().__init__(f"room {room_id!r} is at version {actual}, not {expected}")
        self.room_id, self.expected, self.actual = room_id, expected, actual


class IdempotencyConflict(AppendConflict):
    """Some, not all, of an append's event ids were already recorded."""


class LeaseLost(AppendConflict):
    """The append was made under a room's reply lease that has passed to another process."""

    def __init__(self, room_id: str) -> None:
        super().__init__(f"the reply lease of room {room_id!r} is held by another process")
        self.room_id = room_id


@dataclass(eq=False, slots=True)
class _Append:
    room_id: str
    events: Sequence[NewEvent]
    expected_version: int | None
    at: datetime
    fresh: bool  # every event id was made by ``append`` itself: none can be recorded yet
    lease_owner: str | None  # written only while this owner holds the room's reply lease
    future: asyncio.Future[list[RecordedEvent]]


Outcomes = dict[int, list[RecordedEvent] | BaseException]


@dataclass
class _Plan:
    """What a batch writes, decided from what the log already holds and the rooms' heads."""

    outcomes: Outcomes
    rows: list[tuple[_Append, NewEvent, int]]  # (request, event, version)
    placed: list[_Append]
    replays: list[_Append]  # the same append twice in one batch
    heads: dict[str, int]  # new heads of the rooms written to


def _place(
    batch: list[_Append],
    known: dict[UUID, RecordedEvent],
    heads: dict[str, int],
    owners: dict[str, str | None],
) -> _Plan:
    plan = _Plan({}, [], [], [], {})
    seen: set[UUID] = set()
    for request in batch:
        if not request.fresh:
            ids = [e.event_id for e in request.events]
            if all(i in known for i in ids):
                plan.outcomes[id(request)] = [known[i] for i in ids]
                continue
            if all(i in seen for i in ids):
                plan.replays.append(request)
                continue
            if any(i in known or i in seen for i in ids):
                plan.outcomes[id(request)] = IdempotencyConflict(
                    "some of these events were already recorded"
                )
                continue
        if request.lease_owner is not None and owners.get(request.room_id) != request.lease_owner:
            plan.outcomes[id(request)] = LeaseLost(request.room_id)
            continue
        head = heads[request.room_id]
        if request.expected_version is not None and request.expected_version != head:
            plan.outcomes[id(request)] = ConcurrencyError(
                request.room_id, request.expected_version, head
            )
            continue
        for new in request.events:
            head += 1
            plan.rows.append((request, new, head))
        heads[request.room_id] = plan.heads[request.room_id] = head
        if not request.fresh:
            seen.update(e.event_id for e in request.events)
        plan.placed.append(request)
    return plan


def _finish(plan: _Plan, fresh: list[RecordedEvent]) -> tuple[Outcomes, list[RecordedEvent]]:
    """Hand each placed (or replayed) request its records."""
    if not plan.replays:
        i = 0
        for request in plan.placed:
            n = len(request.events)
            plan.outcomes[id(request)] = fresh[i : i + n]
            i += n
        return plan.outcomes, fresh
    by_id = {r.event_id: r for r in fresh}
    for request in plan.placed + plan.replays:
        plan.outcomes[id(request)] = [by_id[e.event_id] for e in request.events]
    return plan.outcomes, fresh


class EventStore:
    def __init__(self, db: Database, *, max_batch_events: int = 5000) -> None:
        self.db = db
        self.max_batch_events = max_batch_events
        self._queue: asyncio.Queue[_Append] = asyncio.Queue()
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._sqlite = SqliteWriter(db.url) if db.dialect.is_sqlite else None
        self.batches_written = 0  # seen by benchmarks and tests of batching

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="event-store-appender")

    async def close(self) -> None:
        """Stop taking appends, finish what is queued, stop the appender."""
        self._closing = True
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._sqlite is not None:
            await self._sqlite.close()

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # -- writing ---------------------------------------------------------------------------

    async def append(
        self,
        room_id: str,
        new_events: Sequence[NewEvent | Event],
        *,
        expected_version: int | None = None,
        recorded_at: datetime | None = None,
        lease_owner: str | None = None,
    ) -> list[RecordedEvent]:
        """Append events to a room's stream; returns them as recorded, after commit.

        Appending events whose ids are already recorded writes nothing and returns the
        original records, so a retried append is harmless.

        ``recorded_at`` is for imports and tests only (replays paced by known gaps): it
        replaces the clock for these events. It must be timezone-aware, and the caller keeps
        a room's times in version order; the server itself never passes it.

        ``lease_owner``: write only if this owner holds the room's reply lease (checked
        under the room's write lock), else fail with ``LeaseLost`` (see ``store.leases``).
        """
        if recorded_at is not None and recorded_at.tzinfo is None:
            raise ValueError("recorded_at must be timezone-aware")
        if self._closing:
            raise StoreUnavailable("the server is shutting down")
        if not new_events:
            return []
        self.start()
        wrapped: list[NewEvent] = []
        fresh = True  # ids made here cannot be recorded yet: no lookup needed
        for e in new_events:
            if isinstance(e, NewEvent):
                wrapped.append(e)
                fresh = False
            else:
                wrapped.append(NewEvent(e))
        request = _Append(
            room_id,
            wrapped,
            expected_version,
            recorded_at or datetime.now(UTC),
            fresh,
            lease_owner,
            asyncio.get_running_loop().create_future(),
        )
        self._queue.put_nowait(request)
        # No shield needed: a caller cancelled meanwhile cancels only its own future, which
        # the appender skips when it resolves the batch; the events are written either way.
        return await request.future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0].events)
            while size < self.max_batch_events and not self._queue.empty():
                request = self._queue.get_nowait()
                batch.append(request)
                size += len(request.events)
            try:
                await self._commit(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[_Append]) -> None:
        started = time.monotonic()
        try:
            if self._sqlite is not None:
                now = datetime.now(UTC)
                outcomes, fresh = await self._sqlite.run(lambda c: _write_sqlite(c, batch, now))
            else:
                outcomes, fresh = await self._write(batch)
        except Exception as exc:
            if len(batch) == 1:
                log.warning("append to room %s failed: %s", batch[0].room_id, exc)
                outcomes, fresh = {id(batch[0]): _as_store_error(exc)}, []
            else:
                # Keep one bad request from failing its neighbours: write each on its own.
                for request in batch:
                    await self._commit([request])
                return
        self.batches_written += 1
        metrics.GROUP_COMMIT_SECONDS.observe(time.monotonic() - started)
        metrics.GROUP_COMMIT_EVENTS.observe(len(fresh))
        metrics.EVENTS_APPENDED.inc(len(fresh))
        if fresh:
            for listener in self._listeners:
                try:
                    listener(fresh)
                except Exception:
                    log.exception("event listener failed")
        for request in batch:
            outcome = outcomes[id(request)]
            if request.future.done():
                continue
            if isinstance(outcome, BaseException):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(outcome)

    async def _write(self, batch: list[_Append]) -> tuple[Outcomes, list[RecordedEvent]]:
        """The batch through SQLAlchemy's async engine (PostgreSQL)."""
        now = datetime.now(UTC)
        async with self.db.writer.begin() as conn:
            checked = [e.event_id for r in batch if not r.fresh for e in r.events]
            known = await _recorded_by_id(conn, checked) if checked else {}
            rooms = sorted({r.room_id for r in batch})
            await self.db.dialect.ensure_streams(conn, rooms, now)
            heads = await self.db.dialect.lock_heads(conn, rooms)
            guarded = _guarded_rooms(batch)
            owners = _owners(await conn.execute(_owners_query(guarded))) if guarded else {}
            plan = _place(batch, known, heads, owners)
            if not plan.rows:
                return plan.outcomes, []
            rows = [
                {
                    "room_id": request.room_id,
                    "version": version,
                    "event_id": new.event_id,
                    "type": event_type(new.event),
                    "data": encode_data(new.event).decode(),
                    "recorded_at": request.at,
                }
                for request, new, version in plan.rows
            ]
            result = await conn.execute(
                events.insert().returning(events.c.position, sort_by_parameter_order=True), rows
            )
            fresh = [
                RecordedEvent(
                    position=position,
                    room_id=request.room_id,
                    version=version,
                    event_id=new.event_id,
                    recorded_at=request.at,
                    event=new.event,
                )
                for (request, new, version), position in zip(
                    plan.rows, result.scalars(), strict=True
                )
            ]
            await project(conn, fresh)
            await conn.execute(
                update(streams)
                .where(streams.c.room_id == bindparam("target_room"))
                .values(version=bindparam("new_version"), updated_at=now),
                [{"target_room": r, "new_version": v} for r, v in sorted(plan.heads.items())],
            )
        return _finish(plan, fresh)

    # -- reading ---------------------------------------------------------------------------

    async def read_stream(
        self, room_id: str, after: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]:
        async with self.db.snapshot() as conn:
            return await read_events(conn, room_id, after, limit=limit)

    async def head(self, room_id: str) -> int | None:
        async with self.db.snapshot() as conn:
            return await head_of(conn, room_id)


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


async def _recorded_by_id(conn: AsyncConnection, ids: Iterable[UUID]) -> dict[UUID, RecordedEvent]:
    wanted = list(ids)
    found: dict[UUID, RecordedEvent] = {}
    for start in range(0, len(wanted), 500):
        result = await conn.execute(
            select(events).where(events.c.event_id.in_(wanted[start : start + 500]))
        )
        for row in result:
            found[row.event_id] = recorded_from_row(row)
    return found


def _write_sqlite(
    tx: sqlite_writer.Batch, batch: list[_Append], now: datetime
) -> tuple[Outcomes, list[RecordedEvent]]:
    """The batch in one SQLite transaction, on the writer thread (``sqlite_writer``)."""
    checked = [e.event_id for r in batch if not r.fresh for e in r.events]
    known: dict[UUID, RecordedEvent] = {}
    if checked:
        for row in tx.rows_by_id(checked):
            known[row.event_id] = recorded_from_row(row)
    rooms = sorted({r.room_id for r in batch})
    heads = tx.heads(rooms, now)
    guarded = _guarded_rooms(batch)
    owners = tx.owners(guarded) if guarded else {}
    plan = _place(batch, known, heads, owners)
    if not plan.rows:
        return plan.outcomes, []
    position = tx.next_position()
    fresh: list[RecordedEvent] = []
    rows: list[tuple[Any, ...]] = []
    last: _Append | None = None
    at_text, time_text = "", sqlite_writer.TimeText()
    for request, new, version in plan.rows:
        if request is not last:
            last, at_text = request, time_text(request.at)
        event = new.event
        rows.append(
            (
                position,
                request.room_id,
                version,
                new.event_id.hex,
                event_type(event),
                encode_data(event).decode(),
                at_text,
            )
        )
        fresh.append(
            RecordedEvent(position, request.room_id, version, new.event_id, request.at, event)
        )
        position += 1
    tx.insert_events(rows)
    project_sync(tx.conn, fresh)
    tx.set_heads(plan.heads, now)
    return _finish(plan, fresh)


def _guarded_rooms(batch: list[_Append]) -> list[str]:
    return sorted({r.room_id for r in batch if r.lease_owner is not None})


def _owners_query(room_ids: list[str]) -> Select[tuple[str, str | None]]:
    # Read after the rooms' write locks: a lease taken over has committed by then, and a
    # takeover waits for this transaction, so the answer holds until we commit.
    return select(reply_leases.c.room_id, reply_leases.c.owner).where(
        reply_leases.c.room_id.in_(room_ids)
    )


def _owners(rows: Iterable[Any]) -> dict[str, str | None]:
    return {row.room_id: row.owner for row in rows}


def _as_store_error(exc: Exception) -> BaseException:
    if isinstance(exc, IntegrityError):
        return AppendConflict("the append conflicts with recorded data (a duplicate id?)")
    if isinstance(exc, OperationalError | DBAPIError):
        return StoreUnavailable(_db_reason(exc))
    return exc


def _db_reason(exc: DBAPIError) -> str:
    text = str(exc.orig) if exc.orig is not None else str(exc)
    lowered = text.lower()
    if "disk" in lowered and "full" in lowered:
        return "the database disk is full"
    if "readonly" in lowered or "read-only" in lowered:
        return "the database is read-only"
    if "locked" in lowered:
        return "the database is busy"
    return "the database is unavailable"

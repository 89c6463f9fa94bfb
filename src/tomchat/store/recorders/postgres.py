"""The PostgreSQL recorder: many processes on many hosts, one database server.

A batch locks its rooms' ``streams`` rows (in room-id order, so two writers never deadlock)
and writes its events and the rooms' new heads in one statement on the asyncpg connection
under SQLAlchemy's (arrays in, positions out); readers run REPEATABLE READ, so a read
transaction sees one snapshot. Reply leases are measured by the database's clock.

A process frozen inside a write transaction (SIGSTOP, a paused VM, a partition) keeps its
rooms' rows locked. So a batch skips rooms locked by someone else (``SKIP LOCKED``; the event
store retries their appends in a later batch) and never waits behind one room; every writing
session has a ``lock_timeout`` for any other wait, and an
``idle_in_transaction_session_timeout`` after which the server ends the frozen session and
frees its locks (``SessionSettings``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

import asyncpg
from sqlalchemy import ColumnElement, Interval, Select, Table, func, literal, type_coerce
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tomchat.domain.codec import decode_event, encode_data
from tomchat.domain.events import RecordedEvent, event_type
from tomchat.domain.transcript import MessageRow
from tomchat.store.placement import (
    Append,
    Plan,
    Written,
    checked_ids,
    finish,
    guarded_rooms,
    place,
    waits_for_locks,
)
from tomchat.store.projection import project
from tomchat.store.recorders.base import Recorder, SessionSettings, T, redact
from tomchat.store.schema import UTCDateTime, streams

_MIGRATION_LOCK = 0x746F6D63  # "tomc": the advisory lock key of tomchat's migrations


class PostgresRecorder(Recorder):
    name = "postgresql"
    label = "PostgreSQL"
    driver = "postgresql+asyncpg"

    @staticmethod
    def create_engines(url: str, timeouts: SessionSettings) -> tuple[AsyncEngine, AsyncEngine]:
        # Writing sessions only: readers take no locks, and an export's read transaction may
        # rightly sit idle while its client reads slowly.
        session = {
            "lock_timeout": f"{round(timeouts.lock_seconds * 1000)}ms",
            "idle_in_transaction_session_timeout": (
                f"{round(timeouts.idle_in_transaction_seconds * 1000)}ms"
            ),
            # Whose session is whose in pg_stat_activity, for operators (and tests).
            "application_name": f"tomchat-{os.getpid()}",
        }
        writer = create_async_engine(
            url,
            pool_size=4,
            max_overflow=4,
            pool_pre_ping=True,
            connect_args={"server_settings": session},
        )
        reader = create_async_engine(
            url,
            pool_size=8,
            max_overflow=8,
            pool_pre_ping=True,
            isolation_level="REPEATABLE READ",
        )
        return writer, reader

    @staticmethod
    def lock_for_migrations(connection: Connection) -> None:
        # A transaction-level advisory lock held until the migration commits: the next
        # server to migrate finds the schema done.
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")

    # -- writing ---------------------------------------------------------------------------

    async def write(self, batch: Sequence[Append]) -> Written:
        now = datetime.now(UTC)
        rooms = sorted({r.room_id for r in batch})
        async with self.writer.begin() as conn:
            # The first statement goes through SQLAlchemy, which begins the transaction on
            # the driver connection; the rest of the hot path runs on that asyncpg
            # connection itself, inside the same transaction, as a handful of statements
            # whose parameters are arrays: each costs one round trip and one encode in
            # asyncpg's C codecs whatever the batch size, where SQLAlchemy Core compiled,
            # processed and bound every value of every row in Python.
            # Rooms another transaction holds are left out (SKIP LOCKED): ``place`` answers
            # their appends ``RoomBusy`` and the event store's busy lane, which waits, writes
            # them. Only that lane's batches wait for locks.
            lock = _LOCK_HEADS if waits_for_locks(batch) else _LOCK_HEADS_SKIP
            locked = await conn.exec_driver_sql(lock, (rooms,))
            heads = dict(cast("list[tuple[str, int]]", locked.all()))
            pg = await _driver_connection(conn)
            try:
                if len(heads) < len(rooms):
                    heads |= await _new_streams(pg, [r for r in rooms if r not in heads], now, lock)
                checked = checked_ids(batch)
                known = await _recorded_by_id(pg, checked) if checked else {}
                guarded = guarded_rooms(batch)
                # Read after the rooms' write locks, in a statement of its own (so a snapshot
                # of its own): a lease taken over has committed by then, and a takeover waits
                # for this transaction, so the answer holds until we commit.
                owners = dict(await pg.fetch(_OWNERS, guarded)) if guarded else {}
                plan = place(batch, known, heads, owners)
                if not plan.rows:
                    return plan.outcomes, []
                fresh = await _insert(pg, plan, now)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                raise await _as_sqlalchemy_error(conn, pg, exc) from exc
            # Rare (no chunk needs it) and varied: the projection stays in SQLAlchemy Core,
            # on the same connection and transaction.
            await project(conn, fresh)
            # A deletion strips the message's words from its earlier events, in this same
            # transaction (domain.redaction).
            await redact(conn, fresh)
        return finish(plan, fresh)

    async def close(self) -> None:
        # Nothing runs beside the engines, which ``dispose`` closes.
        return None

    # -- reading ---------------------------------------------------------------------------

    def message_rows(self, raw: Iterable[tuple[Any, ...]]) -> list[MessageRow]:
        # asyncpg gives aware datetimes (timestamptz) and real booleans.
        return [
            MessageRow(
                id,
                room,
                author,
                is_ai,
                content,
                status,
                source,
                audio_url,
                created_at.astimezone(UTC),
                completed_at.astimezone(UTC) if completed_at is not None else None,
                first_version,
                last_version,
                character_id,
                edited,
                deleted,
                alternative_of,
                shown,
            )
            for (
                id,
                room,
                author,
                is_ai,
                content,
                status,
                source,
                audio_url,
                created_at,
                completed_at,
                first_version,
                last_version,
                character_id,
                edited,
                deleted,
                alternative_of,
                shown,
            ) in raw
        ]

    # -- SQL pieces for leases -------------------------------------------------------------

    def clock(self, plus_seconds: float = 0.0) -> ColumnElement[datetime]:
        # The database server's clock, so processes on hosts whose clocks disagree still
        # agree on when a lease ends.
        now: ColumnElement[Any] = func.clock_timestamp()
        if plus_seconds:
            now = now + literal(timedelta(seconds=plus_seconds), Interval())
        return type_coerce(now, UTCDateTime())

    def upsert(self, table: Table) -> postgresql.Insert:
        return postgresql.insert(table)

    async def lock_heads(
        self, conn: AsyncConnection, room_ids: Sequence[str], *, wait: bool = True
    ) -> dict[str, int]:
        result = await conn.execute(self.heads_query(room_ids, wait=wait))
        return {row.room_id: row.version for row in result}

    def heads_query(self, room_ids: Sequence[str], *, wait: bool = True) -> Select[Any]:
        # Row locks in room-id order so two writers never deadlock. ``wait=False`` skips
        # rows locked now (a frozen holder's among them) instead of queueing behind them.
        return (
            super()
            .heads_query(room_ids)
            .order_by(streams.c.room_id)
            .with_for_update(skip_locked=not wait)
        )

    async def read_short(self, work: Callable[[Connection], T]) -> T:
        async with self.reader.connect() as conn, conn.begin():
            return await conn.run_sync(work)

    async def write_short(self, work: Callable[[Connection], T]) -> T:
        # ``run_sync`` runs ``work`` in a greenlet whose statements await asyncpg: one
        # transaction, its statements back to back.
        async with self.writer.begin() as conn:
            return await conn.run_sync(work)

    def lock_unavailable(self, exc: BaseException) -> bool:
        # SQLSTATE 55P03 lock_not_available: NOWAIT found the row locked, or lock_timeout ran
        # out (SQLAlchemy wraps asyncpg's error; its ``orig`` carries the code).
        return getattr(getattr(exc, "orig", None), "sqlstate", None) == "55P03"


# Rows matched by joining the parameter array, never by ``= ANY($1)``: PostgreSQL hashes an
# ``ANY`` array only when it is a constant, so against a parameter of a thousand rooms every
# row scanned was compared with every room (5 ms of a batch's 20 on the database).
# Row locks in room-id order, so two writers never deadlock.
_LOCK_HEADS = (
    "SELECT s.room_id, s.version FROM streams s "
    "JOIN unnest($1::varchar[]) AS r (room_id) USING (room_id) "
    "ORDER BY s.room_id FOR UPDATE OF s"
)
_LOCK_HEADS_SKIP = _LOCK_HEADS + " SKIP LOCKED"
_NEW_STREAMS = (
    "INSERT INTO streams (room_id, version, created_at, updated_at) "
    "SELECT r, 0, $2, $2 FROM unnest($1::varchar[]) AS r ON CONFLICT (room_id) DO NOTHING"
)
_OWNERS = (
    "SELECT l.room_id, l.owner FROM reply_leases l "
    "JOIN unnest($1::varchar[]) AS r (room_id) USING (room_id)"
)
_BY_ID = (
    "SELECT e.position, e.room_id, e.version, e.event_id, e.type, e.data, e.recorded_at "
    "FROM events e JOIN unnest($1::uuid[]) AS i (event_id) USING (event_id)"
)
# One statement writes the batch: the events from parallel arrays (positions come from the
# column's sequence, drawn row by row in array order, so sorted they follow the arrays),
# and the rooms' new heads.
_INSERT = """
WITH new AS (
    INSERT INTO events (room_id, version, event_id, type, data, recorded_at)
    SELECT * FROM unnest(
        $1::varchar[], $2::int[], $3::uuid[], $4::varchar[], $5::text[], $6::timestamptz[]
    )
    RETURNING position
), heads AS (
    UPDATE streams SET version = h.version, updated_at = $9
    FROM unnest($7::varchar[], $8::int[]) AS h (room_id, version)
    WHERE streams.room_id = h.room_id
)
SELECT array_agg(position ORDER BY position) FROM new
"""


async def _driver_connection(conn: AsyncConnection) -> asyncpg.Connection:
    raw = await conn.get_raw_connection()
    pg = raw.driver_connection
    assert isinstance(pg, asyncpg.Connection)
    return pg


async def _new_streams(
    pg: asyncpg.Connection, room_ids: list[str], now: datetime, lock: str = _LOCK_HEADS
) -> dict[str, int]:
    """Rooms never written to: their ``streams`` rows made (another writer may be making
    them too; its row wins) and locked, in room-id order. Rooms left out by a skipping
    ``lock`` come here too: their insert does nothing and their lock is skipped again."""
    await pg.execute(_NEW_STREAMS, room_ids, now)
    return dict(await pg.fetch(lock, room_ids))


async def _recorded_by_id(pg: asyncpg.Connection, ids: list[UUID]) -> dict[UUID, RecordedEvent]:
    found: dict[UUID, RecordedEvent] = {}
    for position, room_id, version, event_id, type_, data, at in await pg.fetch(_BY_ID, ids):
        # asyncpg's own UUID type: a plain one, as every other reader hands out.
        uid = UUID(bytes=event_id.bytes)
        found[uid] = RecordedEvent(
            position, room_id, version, uid, at.astimezone(UTC), decode_event(type_, data)
        )
    return found


async def _insert(pg: asyncpg.Connection, plan: Plan, now: datetime) -> list[RecordedEvent]:
    room_ids: list[str] = []
    versions: list[int] = []
    ids: list[UUID] = []
    types: list[str] = []
    data: list[str] = []
    times: list[datetime] = []
    for request, new, version in plan.rows:
        room_ids.append(request.room_id)
        versions.append(version)
        ids.append(new.event_id)
        types.append(event_type(new.event))
        data.append(encode_data(new.event).decode())
        times.append(request.at)
    new_heads = sorted(plan.heads.items())
    positions = await pg.fetchval(
        _INSERT,
        room_ids,
        versions,
        ids,
        types,
        data,
        times,
        [r for r, _ in new_heads],
        [v for _, v in new_heads],
        now,
    )
    return [
        RecordedEvent(position, request.room_id, version, new.event_id, request.at, new.event)
        for (request, new, version), position in zip(plan.rows, positions, strict=True)
    ]


async def _as_sqlalchemy_error(
    conn: AsyncConnection, pg: asyncpg.Connection, exc: BaseException
) -> DBAPIError:
    """A driver error as SQLAlchemy reports it everywhere else (the event store's contract);
    a connection that died is dropped from the pool rather than handed out again."""
    if pg.is_closed():
        await conn.invalidate(exc)
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return IntegrityError(None, None, exc)
    return OperationalError(None, None, exc)

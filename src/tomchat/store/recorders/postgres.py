"""The PostgreSQL recorder: many processes on many hosts, one database server.

A batch locks its rooms' ``streams`` rows (in room-id order, so two writers never deadlock)
and writes through SQLAlchemy's async engine on asyncpg; readers run REPEATABLE READ, so a
read transaction sees one snapshot. Reply leases are measured by the database's clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Interval,
    Table,
    bindparam,
    func,
    literal,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tomchat.domain.codec import encode_data
from tomchat.domain.events import RecordedEvent, event_type
from tomchat.domain.transcript import MessageRow
from tomchat.store.placement import Append, Written, checked_ids, finish, guarded_rooms, place
from tomchat.store.projection import project
from tomchat.store.reads import recorded_by_id
from tomchat.store.recorders.base import Recorder, redact
from tomchat.store.schema import UTCDateTime, events, reply_leases, streams

_MIGRATION_LOCK = 0x746F6D63  # "tomc": the advisory lock key of tomchat's migrations


class PostgresRecorder(Recorder):
    name = "postgresql"
    label = "PostgreSQL"
    driver = "postgresql+asyncpg"

    @staticmethod
    def create_engines(url: str) -> tuple[AsyncEngine, AsyncEngine]:
        writer = create_async_engine(url, pool_size=4, max_overflow=4, pool_pre_ping=True)
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
        async with self.writer.begin() as conn:
            checked = checked_ids(batch)
            known = await recorded_by_id(conn, checked) if checked else {}
            rooms = sorted({r.room_id for r in batch})
            await _ensure_streams(conn, rooms, now)
            heads = await self.lock_heads(conn, rooms)
            guarded = guarded_rooms(batch)
            owners = await _owners(conn, guarded) if guarded else {}
            plan = place(batch, known, heads, owners)
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
            await redact(conn, fresh)
            await conn.execute(
                update(streams)
                .where(streams.c.room_id == bindparam("target_room"))
                .values(version=bindparam("new_version"), updated_at=now),
                [{"target_room": r, "new_version": v} for r, v in sorted(plan.heads.items())],
            )
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

    async def lock_heads(self, conn: AsyncConnection, room_ids: Sequence[str]) -> dict[str, int]:
        # Row locks in room-id order so two writers never deadlock.
        query = (
            select(streams.c.room_id, streams.c.version)
            .where(streams.c.room_id.in_(sorted(room_ids)))
            .order_by(streams.c.room_id)
            .with_for_update()
        )
        result = await conn.execute(query)
        return {row.room_id: row.version for row in result}


async def _ensure_streams(conn: AsyncConnection, room_ids: Sequence[str], now: datetime) -> None:
    rows = [{"room_id": r, "version": 0, "created_at": now, "updated_at": now} for r in room_ids]
    await conn.execute(postgresql.insert(streams).on_conflict_do_nothing(), rows)


async def _owners(conn: AsyncConnection, room_ids: list[str]) -> dict[str, str | None]:
    # Read after the rooms' write locks: a lease taken over has committed by then, and a
    # takeover waits for this transaction, so the answer holds until we commit.
    query = select(reply_leases.c.room_id, reply_leases.c.owner).where(
        reply_leases.c.room_id.in_(room_ids)
    )
    return {row.room_id: row.owner for row in await conn.execute(query)}

"""The SQLite recorder: one file on one host, each batch in one hop to the writer thread.

Writes go through ``sqlite_writer`` (one thread, one connection, ``BEGIN IMMEDIATE``), which
serialises them across processes too: that lock is also every room's write lock. Readers use
deferred ``BEGIN``, which in WAL mode gives each read transaction one consistent snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, event, literal
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tomchat.domain.codec import encode_data
from tomchat.domain.events import MessageRedacted, RecordedEvent, event_type
from tomchat.domain.transcript import MessageRow
from tomchat.store.placement import Append, Written, checked_ids, finish, guarded_rooms, place
from tomchat.store.projection import project_sync
from tomchat.store.reads import recorded_from_row
from tomchat.store.recorders.base import Recorder, SessionSettings, T, redact_sync
from tomchat.store.recorders.sqlite_readers import SqliteReaders
from tomchat.store.recorders.sqlite_writer import (
    Batch,
    SqliteWriter,
    TimeText,
    configure_sqlite_connection,
)
from tomchat.store.schema import UTCDateTime


class SqliteRecorder(Recorder):
    name = "sqlite"
    label = "SQLite"
    driver = "sqlite+aiosqlite"

    def __init__(self, url: str, timeouts: SessionSettings | None = None) -> None:
        super().__init__(url, timeouts)
        self._writer: SqliteWriter | None = None  # started by the first write
        self._readers: SqliteReaders | None = None  # started by the first short read

    @classmethod
    def url_problem(cls, url: URL) -> str | None:
        if (problem := super().url_problem(url)) is not None:
            return problem
        if not url.database or url.database == ":memory:":
            return "SQLite needs a file path, not memory"
        return None

    @staticmethod
    def create_engines(url: str, timeouts: SessionSettings) -> tuple[AsyncEngine, AsyncEngine]:
        # The async writer engine serves the few writes outside the log (leases, room
        # tokens, rebuilds): one connection whose transactions start with BEGIN IMMEDIATE.
        writer = create_async_engine(url, pool_size=1, max_overflow=0)
        # Eight kept: with four, every reply's start met the pool full and opened (and then
        # closed) connections of its own — a thread and the connection's pragmas each time,
        # 20-30 a second at a hundred rooms.
        reader = create_async_engine(url, pool_size=8, max_overflow=8)
        _tune(writer, "BEGIN IMMEDIATE", timeouts.sqlite_synchronous)
        _tune(reader, "BEGIN", timeouts.sqlite_synchronous)
        return writer, reader

    @staticmethod
    def lock_for_migrations(connection: Connection) -> None:
        # Servers on SQLite share one host and one file: its writers are serialised by the
        # file lock already.
        return None

    # -- writing ---------------------------------------------------------------------------

    def _thread(self) -> SqliteWriter:
        if self._writer is None:
            self._writer = SqliteWriter(self.url, self.timeouts.sqlite_synchronous)
        return self._writer

    async def write_short(self, work: Callable[[Connection], T]) -> T:
        return await self._thread().run(lambda tx: work(tx.conn))

    async def write(self, batch: Sequence[Append]) -> Written:
        writer = self._thread()
        now = datetime.now(UTC)
        outcomes, fresh = await writer.run(lambda tx: _write(tx, batch, now))
        if any(type(r.event) is MessageRedacted for r in fresh):
            # The words were rewritten in place (secure_delete zeroes the freed bytes), but
            # the WAL still holds the pages as they were: copy it into the database and
            # truncate it, so no frame with the words is left on disk.
            await writer.checkpoint()
        return outcomes, fresh

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.close()
        readers, self._readers = self._readers, None
        if readers is not None:
            await readers.close()

    # -- reading ---------------------------------------------------------------------------

    async def read_short(self, work: Callable[[Connection], T]) -> T:
        if self._readers is None:
            self._readers = SqliteReaders(self.url, self.timeouts.sqlite_synchronous)
        return await self._readers.run(work)

    def message_rows(self, raw: Iterable[tuple[Any, ...]]) -> list[MessageRow]:
        iso = datetime.fromisoformat
        return [
            MessageRow(
                id,
                room,
                author,
                bool(is_ai),  # SQLite gives 0 or 1
                content,
                status,
                source,
                audio_url,
                # SQLite keeps naive ISO text in UTC; appending the offset is several times
                # faster than parsing and then .replace(tzinfo=UTC).
                iso(created_at + "+00:00"),
                iso(completed_at + "+00:00") if completed_at is not None else None,
                first_version,
                last_version,
                character_id,
                bool(edited),
                bool(deleted),
                alternative_of,
                bool(shown),
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
        # One file on one host: its processes share the host's clock, which is this process's.
        at = datetime.now(UTC) + timedelta(seconds=plus_seconds)
        return literal(at, UTCDateTime())

    def upsert(self, table: Table) -> sqlite.Insert:
        return sqlite.insert(table)

    async def lock_heads(
        self, conn: AsyncConnection, room_ids: Sequence[str], *, wait: bool = True
    ) -> dict[str, int]:
        # No row lock needed: BEGIN IMMEDIATE already made this the only writer (and the
        # session timeouts have no SQLite counterpart: the file lock has one writer).
        result = await conn.execute(self.heads_query(room_ids, wait=wait))
        return {row.room_id: row.version for row in result}


def _write(tx: Batch, batch: Sequence[Append], now: datetime) -> Written:
    """The batch in one SQLite transaction, on the writer thread (``sqlite_writer``)."""
    checked = checked_ids(batch)
    known = (
        {row.event_id: recorded_from_row(row) for row in tx.rows_by_id(checked)} if checked else {}
    )
    rooms = sorted({r.room_id for r in batch})
    heads = tx.heads(rooms, now)
    guarded = guarded_rooms(batch)
    owners = tx.owners(guarded) if guarded else {}
    plan = place(batch, known, heads, owners)
    if not plan.rows:
        return plan.outcomes, []
    position = tx.next_position()
    fresh: list[RecordedEvent] = []
    rows: list[tuple[Any, ...]] = []
    last: Append | None = None
    at_text, time_text = "", TimeText()
    for request, new, version in plan.rows:
        if request is not last:
            last, at_text = request, time_text(request.at)
        ev = new.event
        rows.append(
            (
                position,
                request.room_id,
                version,
                new.event_id.hex,
                event_type(ev),
                encode_data(ev).decode(),
                at_text,
            )
        )
        fresh.append(
            RecordedEvent(position, request.room_id, version, new.event_id, request.at, ev)
        )
        position += 1
    tx.insert_events(rows)
    project_sync(tx.conn, fresh)
    redact_sync(tx.conn, fresh)
    tx.set_heads(plan.heads, now)
    return finish(plan, fresh)


def _tune(engine: AsyncEngine, begin: str, synchronous: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        configure_sqlite_connection(dbapi_connection, synchronous)

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

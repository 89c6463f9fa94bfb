"""Everything that differs between SQLite and PostgreSQL, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Interval, Table, event, func, literal, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tomchat.store.schema import UTCDateTime, streams

_MIGRATION_LOCK = 0x746F6D63  # "tomc": the advisory lock key of tomchat's migrations


@dataclass(frozen=True)
class Dialect:
    name: str

    @property
    def is_sqlite(self) -> bool:
        return self.name == "sqlite"

    def create_engines(self, url: str) -> tuple[AsyncEngine, AsyncEngine]:
        """A writer engine and a reader engine.

        SQLite: one writer connection whose transactions start with ``BEGIN IMMEDIATE`` so
        room writes are serialised across processes too; readers use deferred ``BEGIN``,
        which in WAL mode gives each read transaction one consistent snapshot.
        PostgreSQL: writers lock ``streams`` rows; readers run REPEATABLE READ.
        """
        if self.is_sqlite:
            writer = create_async_engine(url, pool_size=1, max_overflow=0)
            reader = create_async_engine(url, pool_size=4, max_overflow=4)
            _sqlite_tuning(writer, "BEGIN IMMEDIATE")
            _sqlite_tuning(reader, "BEGIN")
            return writer, reader
        writer = create_async_engine(url, pool_size=4, max_overflow=4, pool_pre_ping=True)
        reader = create_async_engine(
            url,
            pool_size=8,
            max_overflow=8,
            pool_pre_ping=True,
            isolation_level="REPEATABLE READ",
        )
        return writer, reader

    def lock_for_migrations(self, connection: Connection) -> None:
        """Serialise ``tomchat db upgrade`` runs that start together (several servers at
        once): PostgreSQL holds a transaction-level advisory lock until the migration
        commits, so the next one finds the schema done. SQLite servers share one host and
        one file; its writers are serialised by the file lock already."""
        if not self.is_sqlite:
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")

    def upsert(self, table: Table) -> sqlite.Insert | postgresql.Insert:
        """``INSERT`` with ``ON CONFLICT`` clauses: both backends spell them alike, from
        different modules."""
        return sqlite.insert(table) if self.is_sqlite else postgresql.insert(table)

    def clock(self, plus_seconds: float = 0.0) -> ColumnElement[datetime]:
        """Now (plus some seconds) as SQL: the clock reply leases are measured by.

        PostgreSQL: the database server's clock, so processes on hosts whose clocks disagree
        still agree on when a lease ends. SQLite is one file on one host: its processes share
        the host's clock, which is this process's.
        """
        if self.is_sqlite:
            at = datetime.now(UTC) + timedelta(seconds=plus_seconds)
            return literal(at, UTCDateTime())
        now: ColumnElement[Any] = func.clock_timestamp()
        if plus_seconds:
            now = now + literal(timedelta(seconds=plus_seconds), Interval())
        return type_coerce(now, UTCDateTime())

    async def ensure_streams(
        self, conn: AsyncConnection, room_ids: Sequence[str], now: datetime
    ) -> None:
        rows = [
            {"room_id": r, "version": 0, "created_at": now, "updated_at": now} for r in room_ids
        ]
        await conn.execute(self.upsert(streams).on_conflict_do_nothing(), rows)

    async def lock_heads(self, conn: AsyncConnection, room_ids: Sequence[str]) -> dict[str, int]:
        """Current versions of the rooms, locked until the transaction ends.

        Rows are locked in room-id order so two writers never deadlock. SQLite needs no row
        lock: ``BEGIN IMMEDIATE`` already made this the only writer.
        """
        query = select(streams.c.room_id, streams.c.version).where(
            streams.c.room_id.in_(sorted(room_ids))
        )
        if not self.is_sqlite:
            query = query.order_by(streams.c.room_id).with_for_update()
        result = await conn.execute(query)
        return {row.room_id: row.version for row in result}


def configure_sqlite_connection(dbapi_connection: Any) -> None:
    """Every SQLite connection of tomchat's, async or not, is set up the same way."""
    # Take transaction control from the sqlite3 module so BEGIN is ours to say.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_tuning(engine: AsyncEngine, begin: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        configure_sqlite_connection(dbapi_connection)

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)


def dialect_for(url: str) -> Dialect:
    if url.startswith("sqlite"):
        return Dialect("sqlite")
    if url.startswith("postgresql"):
        return Dialect("postgresql")
    raise ValueError(f"unsupported database URL scheme: {url.split(':', 1)[0]!r}")

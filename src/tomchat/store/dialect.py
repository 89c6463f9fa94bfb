"""Everything that differs between SQLite and PostgreSQL, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tomchat.store.schema import streams


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

    async def ensure_streams(
        self, conn: AsyncConnection, room_ids: Sequence[str], now: datetime
    ) -> None:
        rows = [
            {"room_id": r, "version": 0, "created_at": now, "updated_at": now} for r in room_ids
        ]
        if self.is_sqlite:
            await conn.execute(sqlite.insert(streams).on_conflict_do_nothing(), rows)
        else:
            await conn.execute(postgresql.insert(streams).on_conflict_do_nothing(), rows)

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


def _sqlite_tuning(engine: AsyncEngine, begin: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module so BEGIN is ours to say.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)


def dialect_for(url: str) -> Dialect:
    if url.startswith("sqlite"):
        return Dialect("sqlite")
    if url.startswith("postgresql"):
        return Dialect("postgresql")
    raise ValueError(f"unsupported database URL scheme: {url.split(':', 1)[0]!r}")

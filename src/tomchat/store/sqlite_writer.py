"""The SQLite side of group commit: a whole batch in one hop to one writer thread.

Through the async driver every statement of a batch is a round trip to aiosqlite's thread
(a dozen per batch, each with SQLAlchemy's per-statement work around it); at fifty chunks a
second per room that overhead, not the database, was most of the server's CPU. Here one
dedicated thread owns one connection and runs the batch start to finish — ``BEGIN IMMEDIATE``,
heads, inserts, projection, heads again, ``COMMIT`` — and the event loop waits once.

The hot statements go to the driver as plain SQL with values in the form SQLAlchemy itself
stores them (UUIDs as 32 hex digits, naive UTC ``YYYY-MM-DD HH:MM:SS.ffffff``); positions are
assigned as ``max(position) + 1…`` under the write lock, so the insert needs no ``RETURNING``.
The projection keeps using SQLAlchemy Core (``project_sync``); chunks never reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from tomchat.store.schema import events

T = TypeVar("T")

INSERT_EVENTS = (
    "INSERT INTO events (position, room_id, version, event_id, type, data, recorded_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
UPDATE_HEAD = "UPDATE streams SET version = ?, updated_at = ? WHERE room_id = ?"
NEW_STREAM = (
    "INSERT INTO streams (room_id, version, created_at, updated_at) VALUES (?, 0, ?, ?) "
    "ON CONFLICT (room_id) DO NOTHING"
)
_IN_CHUNK = 500


def sqlite_time(at: datetime) -> str:
    """A datetime as ``UTCDateTime`` stores it on SQLite."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.isoformat(" ", "microseconds")


class SqliteWriter:
    """One thread, one connection: every write transaction of the event store."""

    def __init__(self, url: str) -> None:
        sync_url = make_url(url).set(drivername="sqlite+pysqlite")
        # StaticPool: the one connection lives (and is only ever used) on the writer thread.
        self.engine: Engine = create_engine(sync_url, poolclass=StaticPool)
        _tune(self.engine)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tomchat-sqlite-writer")
        self._conn: Connection | None = None

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` inside one ``BEGIN IMMEDIATE`` transaction on the writer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transaction, work)

    def _transaction(self, work: Callable[[Connection], T]) -> T:
        if self._conn is None or self._conn.closed:
            self._conn = self.engine.connect()
        conn = self._conn
        try:
            with conn.begin():
                return work(conn)
        except BaseException:
            # A connection the database broke under us is not reused.
            if conn.invalidated:
                self._conn = None
            raise

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
            self.engine.dispose()

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)


def heads(conn: Connection, room_ids: Sequence[str], now: datetime) -> dict[str, int]:
    """The rooms' versions (new rooms start at 0). ``BEGIN IMMEDIATE`` is the lock."""
    found: dict[str, int] = {}
    for start in range(0, len(room_ids), _IN_CHUNK):
        part = room_ids[start : start + _IN_CHUNK]
        marks = ",".join("?" * len(part))
        result = conn.exec_driver_sql(
            f"SELECT room_id, version FROM streams WHERE room_id IN ({marks})", tuple(part)
        )
        found.update((room, version) for room, version in result)
    missing = [r for r in room_ids if r not in found]
    if missing:
        at = sqlite_time(now)
        conn.exec_driver_sql(NEW_STREAM, [(r, at, at) for r in missing])
        found.update(dict.fromkeys(missing, 0))
    return found


def next_position(conn: Connection) -> int:
    top = conn.exec_driver_sql("SELECT max(position) FROM events").scalar()
    return int(top or 0) + 1


def insert_events(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows of (position, room_id, version, event_id hex, type, data, recorded_at text)."""
    conn.exec_driver_sql(INSERT_EVENTS, list(rows))


def set_heads(conn: Connection, new_heads: dict[str, int], now: datetime) -> None:
    at = sqlite_time(now)
    conn.exec_driver_sql(UPDATE_HEAD, [(v, at, room) for room, v in new_heads.items()])


def rows_by_id(conn: Connection, ids: Sequence[UUID]) -> list[Any]:
    rows: list[Any] = []
    for start in range(0, len(ids), _IN_CHUNK):
        query = select(events).where(events.c.event_id.in_(ids[start : start + _IN_CHUNK]))
        rows += conn.execute(query).all()
    return rows


def _tune(engine: Engine) -> None:
    """The same connection settings as the async engines (``tomchat.store.dialect``)."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

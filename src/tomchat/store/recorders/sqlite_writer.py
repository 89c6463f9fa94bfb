"""The SQLite side of group commit: a whole batch in one hop to one writer thread.

Through the async driver every statement of a batch is a round trip to aiosqlite's thread
(a dozen per batch, each with SQLAlchemy's per-statement work around it); at fifty chunks a
second per room that overhead, not the database, was most of the server's CPU. Here one
dedicated thread owns one connection and runs the batch start to finish — ``BEGIN IMMEDIATE``,
heads, inserts, projection, heads again, ``COMMIT`` — and the event loop waits once.

The hot statements go to the driver as plain SQL with values in the form SQLAlchemy itself
stores them (UUIDs as 32 hex digits, naive UTC ``YYYY-MM-DD HH:MM:SS.ffffff``); positions are
assigned as ``max(position) + 1…`` under the write lock, so the insert needs no ``RETURNING``.
The projection and lookups by event id still go through SQLAlchemy Core; chunks need neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import msgspec
from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from tomchat.store.schema import events

T = TypeVar("T")

# A batch's rooms go to SQLite as one JSON parameter read by ``json_each``, and their heads
# and lease owners come back as one JSON value: one statement for all of them, where
# ``executemany`` of an UPDATE per room cost three times as much and ``IN (?, ?, …)`` needed
# a statement per 500 rooms, each compiled anew. One row back, not one per room, also means
# one GIL hand-off: the sqlite3 module lets go of the GIL around every step (each row
# fetched or inserted), and taking it back waits for the busy event loop to drop it
# (``tomchat.runtime``).
#
# The events themselves stay an ``executemany``: inserting them from one JSON parameter
# (one step) cost SQLite ~12 µs more per event, and ``bench.append`` was 10-25 % slower
# with it even though the per-row hand-offs went away.
INSERT_EVENTS = (
    "INSERT INTO events (position, room_id, version, event_id, type, data, recorded_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
UPDATE_HEADS = (
    "UPDATE streams SET version = h.value, updated_at = ? "
    "FROM json_each(?) AS h WHERE streams.room_id = h.key"
)
SELECT_HEADS = (
    "SELECT json_group_object(s.room_id, s.version) "
    "FROM json_each(?) AS r JOIN streams s ON s.room_id = r.value"
)
SELECT_OWNERS = (
    "SELECT json_group_object(l.room_id, l.owner) "
    "FROM json_each(?) AS r JOIN reply_leases l ON l.room_id = r.value"
)
NEW_STREAM = (
    "INSERT INTO streams (room_id, version, created_at, updated_at) VALUES (?, 0, ?, ?) "
    "ON CONFLICT (room_id) DO NOTHING"
)
_IN_CHUNK = 500
_encode_json = msgspec.json.encode


def configure_sqlite_connection(dbapi_connection: Any, synchronous: str = "FULL") -> None:
    """Every SQLite connection of tomchat's, async or not, is set up the same way
    (``synchronous``: ``FULL`` or ``NORMAL``, see ``SessionSettings``)."""
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
    # Take transaction control from the sqlite3 module so BEGIN is ours to say.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Freed space (a deleted message's words rewritten, a dropped table) is zeroed, not left
    # in the file's free pages and cells.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


class TimeText:
    """``sqlite_time`` for many datetimes close together, as a batch has: the part up to
    the minute is formatted once per minute, the seconds and microseconds each time."""

    __slots__ = ("_key", "_prefix")

    def __init__(self) -> None:
        self._key: tuple[int, ...] = ()
        self._prefix = ""

    def __call__(self, at: datetime) -> str:
        if at.tzinfo is not UTC:
            return sqlite_time(at)
        key = (at.minute, at.hour, at.day, at.month, at.year)
        if key != self._key:
            self._key, self._prefix = key, sqlite_time(at)[:16]  # YYYY-MM-DD HH:MM
        return f"{self._prefix}:{at.second:02d}.{at.microsecond:06d}"


def sqlite_time(at: datetime) -> str:
    """A datetime as ``UTCDateTime`` stores it on SQLite."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return at.isoformat(" ", "microseconds")[:26]  # without the "+00:00"


class SqliteWriter:
    """One thread, one connection: every write transaction of the event store."""

    def __init__(self, url: str, synchronous: str = "FULL") -> None:
        sync_url = make_url(url).set(drivername="sqlite+pysqlite")
        # StaticPool: the one connection lives (and is only ever used) on the writer thread.
        self.engine: Engine = create_engine(sync_url, poolclass=StaticPool)
        _tune(self.engine, synchronous)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tomchat-sqlite-writer")
        self._conn: Connection | None = None

    async def run(self, work: Callable[[Batch], T]) -> T:
        """Run ``work`` inside one ``BEGIN IMMEDIATE`` transaction on the writer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transaction, work)

    def _transaction(self, work: Callable[[Batch], T]) -> T:
        if self._conn is None or self._conn.closed:
            self._conn = self.engine.connect()
        conn = self._conn
        raw: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
        batch = Batch(conn, raw)
        try:
            _begin_immediate(raw)
            result = work(batch)
            raw.commit()
        except BaseException as exc:
            if raw.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    raw.rollback()
            if isinstance(exc, sqlite3.Error):
                # Reported as SQLAlchemy reports driver errors everywhere else.
                raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc
            raise
        finally:
            # Whatever SQLAlchemy began on top of ours has ended with it.
            if conn.in_transaction():
                with contextlib.suppress(Exception):
                    conn.rollback()
        return result

    async def checkpoint(self, wait_seconds: float = 1.0) -> bool:
        """Copy the WAL into the database and truncate it; True if it was done (readers
        still on an older snapshot may keep it from finishing within ``wait_seconds``)."""

        def run() -> bool:
            if self._conn is None or self._conn.closed:
                self._conn = self.engine.connect()
            raw: sqlite3.Connection = self._conn.connection.driver_connection  # type: ignore[assignment]
            raw.execute(f"PRAGMA busy_timeout={int(wait_seconds * 1000)}")
            try:
                busy, _, _ = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                raw.execute("PRAGMA busy_timeout=0")
            return bool(busy == 0)

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, run)

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


BUSY_TIMEOUT = 10.0


def _begin_immediate(raw: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE``, waiting for another writer as long as ``busy_timeout`` would.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25… ms between tries, so a chunk
    whose commit met another connection's short write (a reply lease, a room token) waited
    tens of milliseconds for a lock held for one or two. Here the writer thread retries
    every 0.1 to 1 ms instead; once it holds the write lock nothing else can make it wait (WAL).
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    pause = 0.0001
    while True:
        try:
            raw.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if raw.in_transaction or "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.001)


class Batch:
    """One write transaction: the hot statements on the driver, the rest through SQLAlchemy.

    ``BEGIN IMMEDIATE`` was said on the driver connection, so SQLAlchemy (whose ``begin`` is
    a no-op on this engine) runs its statements inside it.
    """

    def __init__(self, conn: Connection, raw: sqlite3.Connection) -> None:
        self.conn = conn  # for the projection and the rare lookups by event id
        self.raw = raw

    def heads(self, room_ids: Sequence[str], now: datetime) -> dict[str, int]:
        """The rooms' versions (new rooms start at 0). ``BEGIN IMMEDIATE`` is the lock."""
        found: dict[str, int] = self._one_object(SELECT_HEADS, room_ids)
        missing = [r for r in room_ids if r not in found]
        if missing:
            at = sqlite_time(now)
            self.raw.executemany(NEW_STREAM, [(r, at, at) for r in missing])
            found.update(dict.fromkeys(missing, 0))
        return found

    def owners(self, room_ids: Sequence[str]) -> dict[str, str | None]:
        """Who holds each room's reply lease (rooms with no lease row are left out)."""
        return self._one_object(SELECT_OWNERS, room_ids)

    def _one_object(self, query: str, room_ids: Sequence[str]) -> dict[str, Any]:
        (found,) = self.raw.execute(query, (_json(room_ids),)).fetchone()
        return _decode_object(found) if found else {}

    def next_position(self) -> int:
        top = self.raw.execute("SELECT max(position) FROM events").fetchone()[0]
        return int(top or 0) + 1

    def insert_events(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows of (position, room_id, version, event_id hex, type, data, recorded_at text)."""
        self.raw.executemany(INSERT_EVENTS, rows)

    def set_heads(self, new_heads: dict[str, int], now: datetime) -> None:
        at = sqlite_time(now)
        self.raw.execute(UPDATE_HEADS, (at, _json(new_heads)))

    def rows_by_id(self, ids: Sequence[UUID]) -> list[Any]:
        rows: list[Any] = []
        for start in range(0, len(ids), _IN_CHUNK):
            query = select(events).where(events.c.event_id.in_(ids[start : start + _IN_CHUNK]))
            rows += self.conn.execute(query).all()
        return rows


_decode_object = msgspec.json.Decoder(dict[str, Any]).decode


def _json(value: Sequence[str] | dict[str, int]) -> str:
    return _encode_json(value).decode()


def _tune(engine: Engine, synchronous: str) -> None:
    """The same connection settings as the async engines (``recorders.sqlite``)."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        configure_sqlite_connection(dbapi_connection, synchronous)
        # The writer waits for other writers itself (``_begin_immediate``), more promptly.
        dbapi_connection.execute("PRAGMA busy_timeout=0")

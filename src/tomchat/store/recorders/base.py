"""The ``Recorder`` contract: what the event store and the readers ask of a backend.

A recorder writes a batch of appends in one transaction (deciding with the shared
``store.placement``), reads the log, and supplies the few SQL pieces that differ between
backends (engines, the lease clock, upserts, the rooms' write lock, raw message rows).
``EventStore`` keeps group commit, futures and listeners and never asks which backend it has.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar

from sqlalchemy import ColumnElement, Select, Table, and_, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tomchat.domain.events import RecordedEvent
from tomchat.domain.redaction import (
    CARRIERS,
    SUMMARY,
    Redaction,
    StoredEvent,
    marker,
    redactions,
    stripped,
)
from tomchat.domain.transcript import MessageRow
from tomchat.store.placement import Append, Written
from tomchat.store.reads import head_of_sync, read_events_sync
from tomchat.store.schema import events, streams

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """How the database's sessions behave.

    PostgreSQL: how long a writing session may wait on a lock, and sit idle inside a
    transaction, before the database gives up on it (SQLite has one writer and no such
    waits). The second frees the row locks of a process frozen mid-transaction (SIGSTOP, a
    paused VM, a partition), so it must be shorter than a reply lease.

    SQLite: ``sqlite_synchronous`` is the ``synchronous`` pragma of its connections. ``FULL``
    (the default) syncs the write-ahead log at every commit, so a commit survives a power
    loss; ``NORMAL`` syncs only at checkpoints, so a power loss or OS crash may lose the last
    commits (never corrupt the file; a crash of the process alone loses nothing).
    """

    lock_seconds: float = 2.0
    idle_in_transaction_seconds: float = 5.0
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"


class Recorder(ABC):
    """One backend: its engines, its batch write, its reads."""

    name: ClassVar[str]  # SQLAlchemy's backend name: "sqlite", "postgresql"
    label: ClassVar[str]  # as people write it, for error messages
    driver: ClassVar[str]  # the async driver its URLs must name

    def __init__(self, url: str, timeouts: SessionSettings | None = None) -> None:
        self.url = url
        self.timeouts = timeouts or SessionSettings()
        self.writer: AsyncEngine
        self.reader: AsyncEngine
        self.writer, self.reader = self.create_engines(url, self.timeouts)

    # -- set-up ----------------------------------------------------------------------------

    @classmethod
    def url_problem(cls, url: URL) -> str | None:
        """What is wrong with ``url`` for this backend (None: nothing)."""
        if url.drivername != cls.driver:
            return f"{cls.label} needs the async driver: {cls.driver}"
        return None

    @staticmethod
    @abstractmethod
    def create_engines(url: str, timeouts: SessionSettings) -> tuple[AsyncEngine, AsyncEngine]:
        """A writer engine and a reader engine (readers see one snapshot per transaction)."""

    @staticmethod
    @abstractmethod
    def lock_for_migrations(connection: Connection) -> None:
        """Serialise migration runs that start together (several servers at once)."""

    # -- writing ---------------------------------------------------------------------------

    @abstractmethod
    async def write(self, batch: Sequence[Append]) -> Written:
        """Record ``batch`` in one transaction: each request's records (or error) by
        ``id(request)``, and every event newly recorded, in log order.

        A ``message.redacted`` recorded in the batch rewrites, in the same transaction, the
        stored data of that message's earlier events without its words (``redact`` /
        ``redact_sync`` below, deciding with ``domain.redaction``): no read after the commit
        can see them.

        A database failure raises (SQLAlchemy's errors); nothing of the batch is recorded then.
        """

    @abstractmethod
    async def write_short(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one short write transaction of its own and return its result
        (committed; rolled back if it raises).

        For the small writes beside the log that run often (reply leases): ``work`` is
        synchronous, so the transaction holds its locks only as long as its statements
        take, never across a turn of the event loop. SQLite runs it on the event store's
        writer thread, between batches, so it never contends for the file's one write lock
        with them; PostgreSQL runs it on a writer-engine connection.
        """

    def heads_query(self, room_ids: Sequence[str], *, wait: bool = True) -> Select[Any]:
        """The statement of :meth:`lock_heads`: ``(room_id, version)`` of the rooms,
        locked where the backend locks rows (``wait=False``: skipping rows locked now)."""
        return select(streams.c.room_id, streams.c.version).where(
            streams.c.room_id.in_(sorted(room_ids))
        )

    @abstractmethod
    async def close(self) -> None:
        """Stop whatever writing started (a writer thread); a later write starts it again."""

    async def dispose(self) -> None:
        await self.close()
        await self.writer.dispose()
        await self.reader.dispose()

    # -- reading ---------------------------------------------------------------------------

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction that sees one consistent state of the log."""
        async with self.reader.connect() as conn, conn.begin():
            yield conn

    @abstractmethod
    async def read_short(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one read transaction (one consistent state of the log) and return
        its result.

        For the reads the server makes all the time (a room's row, its latest messages, its
        reply queue): ``work`` is synchronous, so the whole read is one hand-off — SQLite
        runs it on a reader thread, PostgreSQL on a reader connection — instead of a round
        trip through the event loop for every statement.
        """

    async def read(
        self, room_id: str, after: int = 0, *, upto: int | None = None, limit: int | None = None
    ) -> list[RecordedEvent]:
        """The room's events with ``after < version <= upto``, oldest first, at most ``limit``."""
        return await self.read_short(
            lambda conn: read_events_sync(conn, room_id, after, upto=upto, limit=limit)
        )

    async def head(self, room_id: str) -> int | None:
        """The room's version; None if nothing was ever appended to it."""
        return await self.read_short(lambda conn: head_of_sync(conn, room_id))

    @abstractmethod
    def message_rows(self, raw: Iterable[tuple[Any, ...]]) -> list[MessageRow]:
        """``messages`` rows read without SQLAlchemy's per-value conversions (the columns of
        ``MessageRow`` in order, as the driver gives them): exports read whole rooms."""

    # -- SQL pieces for leases -------------------------------------------------------------

    @abstractmethod
    def clock(self, plus_seconds: float = 0.0) -> ColumnElement[datetime]:
        """Now (plus some seconds) as SQL: the clock reply leases are measured by."""

    @abstractmethod
    def upsert(self, table: Table) -> sqlite.Insert | postgresql.Insert:
        """``INSERT`` with ``ON CONFLICT`` clauses."""

    @abstractmethod
    async def lock_heads(
        self, conn: AsyncConnection, room_ids: Sequence[str], *, wait: bool = True
    ) -> dict[str, int]:
        """Current versions of the rooms, locked against appends until ``conn`` commits.

        ``wait=False``: a room another transaction has locked now is left out of the answer
        instead of waited for (a backend with one writer never meets one)."""

    def lock_unavailable(self, exc: BaseException) -> bool:
        """True if ``exc`` says a lock could not be had at once or within the lock timeout."""
        return False


# -- redaction: shared by the recorders, inside their write transaction --------------------


def _candidates(redaction: Redaction) -> Select[tuple[int, int, str, str]]:
    """The rows that may hold the message's words: its carriers (found by a substring of
    their data, checked after decoding) and the room's summaries, before the redaction."""
    return select(events.c.position, events.c.version, events.c.type, events.c.data).where(
        events.c.room_id == redaction.room_id,
        events.c.version < redaction.version,
        or_(
            and_(
                events.c.type.in_(CARRIERS),
                events.c.data.contains(marker(redaction.message_id), autoescape=True),
            ),
            events.c.type == SUMMARY,
        ),
    )


_REWRITE = update(events).where(events.c.position == bindparam("row_position"))


def _rewrites(redaction: Redaction, rows: Iterable[Any]) -> list[dict[str, Any]]:
    stored = [StoredEvent(r[0], r[1], r[2], r[3].encode()) for r in rows]
    return [
        {"row_position": key, "new_data": data.decode()}
        for key, data in stripped(redaction, stored)
    ]


def redact_sync(conn: Connection, batch: Sequence[RecordedEvent]) -> int:
    """Strip the words of every message redacted in ``batch`` from its earlier events;
    the number of rows rewritten. On a synchronous connection (the SQLite writer thread)."""
    count = 0
    for redaction in redactions(batch):
        rows = _rewrites(redaction, conn.execute(_candidates(redaction)).all())
        if rows:
            conn.execute(_REWRITE.values(data=bindparam("new_data")), rows)
            count += len(rows)
    return count


async def redact(conn: AsyncConnection, batch: Sequence[RecordedEvent]) -> int:
    """``redact_sync`` on an async connection (PostgreSQL)."""
    count = 0
    for redaction in redactions(batch):
        rows = _rewrites(redaction, (await conn.execute(_candidates(redaction))).all())
        if rows:
            await conn.execute(_REWRITE.values(data=bindparam("new_data")), rows)
            count += len(rows)
    return count

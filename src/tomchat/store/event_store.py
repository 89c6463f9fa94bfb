"""``EventStore``: the append-only log with group commit.

One appender task takes every append waiting in the queue, from every room, and hands them
to the database's recorder (``store.recorders``) to write in one transaction; each caller's
future resolves with its recorded events after commit. Listeners hear about new events after
commit, in commit order: that is the only way events reach clients, so nobody can see what
is not yet durable. Which backend records them is the recorder's business alone.

The appender never waits for a room's write lock (``Recorder.lock_heads(wait=False)``): an
append to a room another transaction holds (``RoomBusy``: another process writing it now, or
one frozen mid-transaction until the database ends its session) moves to a second lane, the
*busy lane*, which waits for the lock in the database's queue (bounded by its lock timeout,
then tried again) while the appender goes on with every other room. It fails as
``StoreUnavailable`` after ``busy_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from tomchat import metrics
from tomchat.domain.events import Event, NewEvent, RecordedEvent
from tomchat.store.database import Database, StoreUnavailable
from tomchat.store.placement import (
    Append,
    AppendConflict,
    ConcurrencyError,
    IdempotencyConflict,
    LeaseLost,
    RoomBusy,
)
from tomchat.store.reads import head_of, read_events, recorded_from_row

__all__ = [
    "AppendConflict",
    "ConcurrencyError",
    "EventStore",
    "IdempotencyConflict",
    "LeaseLost",
    "Listener",
    "head_of",
    "read_events",
    "recorded_from_row",
]

log = logging.getLogger(__name__)

Listener = Callable[[Sequence[RecordedEvent]], None]


@dataclass(eq=False, slots=True)
class _Request(Append):
    """An append waiting in the queue, with the future its caller awaits."""

    future: asyncio.Future[list[RecordedEvent]] = field(kw_only=True)
    busy_since: float | None = field(default=None, kw_only=True)  # first found RoomBusy


class EventStore:
    def __init__(
        self, db: Database, *, max_batch_events: int = 5000, busy_seconds: float = 30.0
    ) -> None:
        self.db = db
        self.max_batch_events = max_batch_events
        # Longer than the database's idle-in-transaction timeout, which frees a frozen
        # holder's locks.
        self.busy_seconds = busy_seconds
        self._busy: asyncio.Queue[_Request] = asyncio.Queue()  # the busy lane
        self._busy_task: asyncio.Task[None] | None = None
        self.recorder = db.recorder
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._closing = False
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
            await self._busy.join()
            await self._queue.join()
            if self._busy_task is not None:
                self._busy_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._busy_task
                self._busy_task = None
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.recorder.close()

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
        request = _Request(
            room_id,
            wrapped,
            expected_version,
            recorded_at or datetime.now(UTC),
            fresh,
            lease_owner,
            future=asyncio.get_running_loop().create_future(),
        )
        self._queue.put_nowait(request)
        # No shield needed: a caller cancelled meanwhile cancels only its own future, which
        # the appender skips when it resolves the batch; the events are written either way.
        return await request.future

    async def _run(self, queue: asyncio.Queue[_Request] | None = None) -> None:
        queue = queue or self._queue
        while True:
            batch = [await queue.get()]
            size = len(batch[0].events)
            while size < self.max_batch_events and not queue.empty():
                request = queue.get_nowait()
                batch.append(request)
                size += len(request.events)
            try:
                await self._commit(batch)
            finally:
                for _ in batch:
                    queue.task_done()

    async def _commit(self, batch: list[_Request]) -> None:
        outcomes: dict[int, list[RecordedEvent] | BaseException]
        started = time.monotonic()
        try:
            outcomes, fresh = await self.recorder.write(batch)
        except Exception as exc:
            if self.recorder.lock_unavailable(exc):
                # The busy lane's wait ran into the lock timeout: the holder is still there.
                outcomes, fresh = {id(r): RoomBusy(r.room_id) for r in batch}, []
            elif len(batch) == 1:
                log.warning("append to room %s failed: %s", batch[0].room_id, exc)
                outcomes, fresh = {id(batch[0]): _as_store_error(exc)}, []
            else:
                # Keep one bad request from failing its neighbours: write each on its own.
                for request in batch:
                    await self._commit([request])
                return
        metrics.GROUP_COMMIT_SECONDS.observe(time.monotonic() - started)
        metrics.GROUP_COMMIT_EVENTS.observe(len(fresh))
        metrics.EVENTS_APPENDED.inc(len(fresh))
        if fresh:
            self.batches_written += 1
            for listener in self._listeners:
                try:
                    listener(fresh)
                except Exception:
                    log.exception("event listener failed")
        for request in batch:
            outcome = outcomes[id(request)]
            if isinstance(outcome, RoomBusy):
                # Written later even if its caller has gone, like any append taken.
                given_up = self._defer(request, outcome)
                if given_up is None:
                    continue
                outcome = given_up
            if request.future.done():
                continue
            if isinstance(outcome, BaseException):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(outcome)

    def _defer(self, request: _Request, busy: RoomBusy) -> BaseException | None:
        """Hand a busy room's append to the busy lane; the error to give up with, once it
        has waited ``busy_seconds``."""
        now = time.monotonic()
        if request.busy_since is None:
            request.busy_since = now
        elif now - request.busy_since > self.busy_seconds:
            log.warning("%s: an append to it gave up", busy)
            return StoreUnavailable(f"{busy} for too long")
        request.wait_for_lock = True
        self._busy.put_nowait(request)
        if self._busy_task is None:
            self._busy_task = asyncio.create_task(self._run(self._busy), name="busy-lane")
        return None

    # -- reading ---------------------------------------------------------------------------

    async def read_stream(
        self, room_id: str, after: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]:
        return await self.recorder.read(room_id, after, limit=limit)

    async def head(self, room_id: str) -> int | None:
        return await self.recorder.head(room_id)


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

"""What a batch of appends writes: the pure decisions every recorder shares.

Given what the log already holds (the batch's event ids found recorded), the rooms' heads and
their reply-lease owners, ``place`` decides each request's fate — new rows with their
versions, the original records of a retried append, or an error — and ``finish`` hands each
request its records once the rows are written. No database here: a recorder reads the
inputs under its write lock and writes the rows (``store.recorders``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from tomchat.domain.errors import TomchatError
from tomchat.domain.events import NewEvent, RecordedEvent


class AppendConflict(TomchatError):
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


class RoomBusy(TomchatError):
    """The room's write lock is held by another transaction now (perhaps a frozen process's):
    the append was not written and goes into a later batch."""

    def __init__(self, room_id: str) -> None:
        super().__init__(f"room {room_id!r} is locked by another writer")
        self.room_id = room_id


@dataclass(eq=False, slots=True)
class Append:
    """One caller's append, as a recorder takes it in a batch."""

    room_id: str
    events: Sequence[NewEvent]
    expected_version: int | None
    at: datetime
    fresh: bool  # every event id was made by ``append`` itself: none can be recorded yet
    lease_owner: str | None  # written only while this owner holds the room's reply lease
    # Found its room locked by another writer once: wait for the lock next time.
    wait_for_lock: bool = field(default=False, kw_only=True)


# Each request's records or error, by ``id(request)``.
Outcomes = dict[int, list[RecordedEvent] | BaseException]
# What a recorder's batch write returns: the outcomes and the events it recorded, in order.
Written = tuple[Outcomes, list[RecordedEvent]]


@dataclass
class Plan:
    """What a batch writes, decided from what the log already holds and the rooms' heads."""

    outcomes: Outcomes
    rows: list[tuple[Append, NewEvent, int]]  # (request, event, version)
    placed: list[Append]
    replays: list[Append]  # the same append twice in one batch
    heads: dict[str, int]  # new heads of the rooms written to


def checked_ids(batch: Sequence[Append]) -> list[UUID]:
    """The event ids to look up before placing: those the callers made themselves."""
    return [e.event_id for r in batch if not r.fresh for e in r.events]


def waits_for_locks(batch: Sequence[Append]) -> bool:
    """Whether the batch waits for its rooms' write locks: only appends that already found
    their room locked do (the busy lane); the others skip locked rooms."""
    return any(r.wait_for_lock for r in batch)


def guarded_rooms(batch: Sequence[Append]) -> list[str]:
    """Rooms whose lease owner must be read (under the write lock) before placing."""
    return sorted({r.room_id for r in batch if r.lease_owner is not None})


def place(
    batch: Sequence[Append],
    known: dict[UUID, RecordedEvent],
    heads: dict[str, int],
    owners: dict[str, str | None],
) -> Plan:
    plan = Plan({}, [], [], [], {})
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
        if request.room_id not in heads:
            # Its write lock was not had without waiting (``Recorder.lock_heads``).
            plan.outcomes[id(request)] = RoomBusy(request.room_id)
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


def finish(plan: Plan, fresh: list[RecordedEvent]) -> Written:
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

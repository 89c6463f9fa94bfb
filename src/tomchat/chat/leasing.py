"""Room leasing: which rooms this process may answer in, across every process sharing the
database.

A room's reply loop runs only while it holds the room's lease (``store.leases``). A process
that cannot take the lease leaves the room to the holder, which looks at the queue again after
it lets go, so no message is left waiting. Held leases are renewed every third of their
length; a renewal that finds a lease gone stops that room's reply from writing, and a stop
asked by another process (written on the lease row) reaches the reply here. A watchdog hands
rooms whose holder died (lease expired, or its pid gone on this machine) to the local reply
loop, which closes the orphaned reply as ``interrupted`` with its committed text before
answering what is still waiting. It also looks for rooms nobody holds that still need a loop —
a user message with no reply after it, or a reply left streaming — which a process leaves
when it dies between committing a message and taking the room's lease: recently written rooms
at every look, every room at start-up.

The decisions are plain functions (:func:`judge_renewal`, :func:`takeovers`,
:func:`orphan_closing`); :class:`RoomLeasing` holds the little state there is and acts on the
rooms through :class:`LeasedRooms`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from tomchat.chat.reply_run import AppendEvents
from tomchat.domain.events import ReplyCompleted
from tomchat.store.leases import Lease, ReplyLeases
from tomchat.store.rooms import StreamingReply

log = logging.getLogger(__name__)

SeesDead = Callable[[str, str | None, int | None], bool]
# Rooms needing a reply loop whose lease nobody holds, written in the last that many seconds
# (None: all of them): ``store.rooms.RoomReader.unattended``.
Unattended = Callable[[float | None], Awaitable[Sequence[str]]]

# How far back the watchdog's frequent look for unattended rooms reaches. A room left longer
# (every process down meanwhile) is found by the start-up look, which reaches everything.
UNATTENDED_WINDOW_SECONDS = 300.0


class LeasedRooms(Protocol):
    """What leasing asks of the rooms' reply loops (the conversation)."""

    def kick(self, room_id: str) -> None:
        """Make sure the room's reply loop looks at its queue again."""
        ...

    def serving(self, room_id: str) -> bool:
        """True while a reply loop of this process runs for the room."""
        ...

    def lease_lost(self, room_id: str) -> None:
        """Another process took the room: its reply here must write nothing more."""
        ...

    def stop_here(self, room_id: str, message_id: str) -> bool:
        """Stop the room's reply ``message_id`` if this process writes it."""
        ...


class Hold:
    """One taking of a room's lease: a renewal acts only on the hold it renewed, never on a
    hold taken anew while it waited."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Renewal:
    """What a renewal found: rooms lost to another process, stops asked elsewhere."""

    lost: tuple[str, ...] = ()
    stops: tuple[tuple[str, str], ...] = ()  # (room, reply to stop)


def judge_renewal(
    asked: Mapping[str, Hold], held: Mapping[str, Hold], renewed: Mapping[str, str | None]
) -> Renewal:
    """Read the answer to renewing the holds ``asked`` while ``held`` is what we hold now.

    A room missing from ``renewed`` is no longer ours; a room renewed with a message id
    carries a stop some other process asked for.
    """
    lost, stops = [], []
    for room_id, hold in asked.items():
        if held.get(room_id) is not hold:
            continue  # let go (or taken anew) while we renewed
        if room_id not in renewed:
            lost.append(room_id)
        elif (stop := renewed[room_id]) is not None:
            stops.append((room_id, stop))
    return Renewal(tuple(lost), tuple(stops))


@dataclass(frozen=True, slots=True)
class Takeover:
    """A room the watchdog hands to the local reply loop."""

    room_id: str
    dead_owner: str | None  # its holder, known dead: take the lease at once, unexpired


def takeovers(
    leases: Iterable[Lease], sees_dead: SeesDead, serving: Callable[[str], bool]
) -> list[Takeover]:
    """The leases held elsewhere whose holder died (expired, or its pid gone on this
    machine), in rooms no local reply loop serves yet."""
    found = []
    for lease in leases:
        dead = sees_dead(lease.owner, lease.node, lease.pid)
        if not (dead or lease.expired) or serving(lease.room_id):
            continue
        found.append(Takeover(lease.room_id, lease.owner if dead else None))
    return found


def unattended_rooms(rooms: Iterable[str], serving: Callable[[str], bool]) -> list[str]:
    """The unattended rooms (nobody holds their lease) no local reply loop serves yet: a
    loop starting here for them takes the lease, or leaves the room to whoever took it
    first."""
    return [room_id for room_id in rooms if not serving(room_id)]


def orphan_closing(orphan: StreamingReply) -> ReplyCompleted:
    """The event that closes a reply whose writer is gone, keeping its committed text."""
    return ReplyCompleted(
        message_id=orphan.row.id,
        content=orphan.text,
        status="interrupted",
        error="the server writing this reply stopped",
    )


async def close_orphans(
    room_id: str, orphans: Sequence[StreamingReply], append: AppendEvents
) -> int:
    """Close replies left streaming by a holder that is gone, keeping their text.

    The caller holds the lease and writes no reply yet, so whatever streams in this room has
    no writer; taking the lease made its committed text final (see ``store.leases``).
    """
    for orphan in orphans:
        log.warning("closing reply %s left streaming in room %s", orphan.row.id, room_id)
        await append(room_id, [orphan_closing(orphan)])
    return len(orphans)


class RoomLeasing:
    """The leases this process holds, their renewal, and the watchdog."""

    def __init__(
        self, leases: ReplyLeases, rooms: LeasedRooms, unattended: Unattended | None = None
    ) -> None:
        self.leases = leases
        self._rooms = rooms
        self._unattended = unattended
        self._held: dict[str, Hold] = {}  # rooms whose lease we hold -> which hold
        self._dead_owners: dict[str, str] = {}  # room -> its holder, seen dead by the watchdog
        self._periodic: list[asyncio.Task[None]] = []  # lease renewal and the watchdog

    @property
    def owner(self) -> str:
        return self.leases.owner

    async def hold(self, room_id: str) -> bool:
        """Take the room's lease (from a holder the watchdog saw dead, too); True if ours."""
        dead_owner = self._dead_owners.pop(room_id, None)
        if not await self.leases.acquire(room_id, dead_owner=dead_owner):
            return False
        self._held[room_id] = Hold()
        return True

    async def let_go(self, room_id: str) -> None:
        if self._held.pop(room_id, None) is None:
            return  # lost meanwhile: not ours to release
        try:
            await self.leases.release(room_id)
        except Exception as exc:
            # It expires by itself; until then the room waits for the watchdogs.
            log.warning("could not release the lease of room %s: %s", room_id, exc)

    async def renew(self) -> Renewal:
        """Extend the leases we hold; act on stops asked elsewhere and on leases lost."""
        asked = dict(self._held)
        if not asked:
            return Renewal()
        try:
            renewed = await self.leases.renew(asked)
        except Exception as exc:
            log.warning("could not renew reply leases: %s", exc)
            return Renewal()
        renewal = judge_renewal(asked, self._held, renewed)
        for room_id in renewal.lost:
            log.warning("lost the lease of room %s to another process", room_id)
            del self._held[room_id]
            self._rooms.lease_lost(room_id)
        for room_id, message_id in renewal.stops:
            self._rooms.stop_here(room_id, message_id)
        return renewal

    async def sweep(self, within: float | None = UNATTENDED_WINDOW_SECONDS) -> list[str]:
        """Hand the rooms whose holder has died, and the unattended rooms written in the
        last ``within`` seconds (None: all), to their reply loops here; returns them."""
        found = takeovers(
            await self.leases.held_elsewhere(),
            self.leases.identity.sees_dead,
            self._rooms.serving,
        )
        for takeover in found:
            if takeover.dead_owner is not None:
                self._dead_owners[takeover.room_id] = takeover.dead_owner
            self._rooms.kick(takeover.room_id)
        kicked = [takeover.room_id for takeover in found]
        if self._unattended is not None:
            for room_id in unattended_rooms(await self._unattended(within), self._rooms.serving):
                if room_id not in kicked:
                    self._rooms.kick(room_id)
                    kicked.append(room_id)
        return kicked

    async def recover(self, streaming_rooms: Callable[[], Awaitable[Sequence[str]]]) -> int:
        """Hand the rooms that stopped processes left mid-reply to the reply loop, which
        closes those replies as ``interrupted`` (text kept) and answers what still waits.

        Rooms whose holder is known dead (this machine, pid gone: a crash and restart) or
        whose lease expired go at once, and so does every room with a message still waiting
        and nobody holding its lease; a lease that might still be alive is left to the
        watchdog. Returns the number of rooms handed over.
        """
        rooms = set(await self.sweep(within=None))
        for room_id in await streaming_rooms():
            # No holder at all: an older schema, or a release after a write that failed.
            if room_id not in rooms and await self.leases.holder(room_id) is None:
                self._rooms.kick(room_id)
                rooms.add(room_id)
        return len(rooms)

    def start(self) -> None:
        """Renew held leases every third of their length; look for dead holders often
        enough that their rooms are taken over within a second or so of expiry."""
        if self._periodic:
            return
        seconds = self.leases.seconds
        self._periodic = [
            asyncio.create_task(_every(seconds / 3, self.renew), name="lease-renewal"),
            asyncio.create_task(_every(min(1.0, seconds / 4), self.sweep), name="watchdog"),
        ]

    async def close(self) -> None:
        """Stop renewing and watching; the leases still held expire or are let go."""
        tasks, self._periodic = self._periodic, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _every(seconds: float, job: Callable[[], Awaitable[object]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except Exception:
            log.exception("%s failed", getattr(job, "__name__", job))

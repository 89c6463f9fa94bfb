"""Room leasing: the renewal, watchdog and recovery decisions as plain functions, then
``RoomLeasing`` acting on them against real leases in a SQLite file."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest

from tomchat.chat.leasing import (
    Hold,
    Renewal,
    RoomLeasing,
    Takeover,
    close_orphans,
    judge_renewal,
    orphan_closing,
    takeovers,
)
from tomchat.cluster.bus import ProcessIdentity
from tomchat.domain.events import Event, ReplyChunk, ReplyCompleted, ReplyStarted
from tomchat.domain.transcript import MessageRow
from tomchat.store.database import Database
from tomchat.store.event_store import EventStore
from tomchat.store.leases import Lease, ReplyLeases
from tomchat.store.migrate import upgrade_async
from tomchat.store.rooms import RoomReader, StreamingReply

pytestmark = pytest.mark.timeout(30)

# -- the decisions ---------------------------------------------------------------------------


def test_renewal_finds_lost_rooms_and_stops() -> None:
    kept, stopping, lost, gone, anew = Hold(), Hold(), Hold(), Hold(), Hold()
    asked = {"kept": kept, "stopping": stopping, "lost": lost, "gone": gone, "anew": anew}
    # While the renewal ran, "gone" was let go and "anew" let go and taken again.
    held = {"kept": kept, "stopping": stopping, "lost": lost, "anew": Hold()}
    renewed = {"kept": None, "stopping": "reply-7"}
    assert judge_renewal(asked, held, renewed) == Renewal(
        lost=("lost",), stops=(("stopping", "reply-7"),)
    )
    assert judge_renewal(asked, asked, dict.fromkeys(asked)) == Renewal(), "all renewed"
    assert judge_renewal({}, held, {}) == Renewal()


def test_the_watchdog_takes_over_dead_and_expired_holders_only() -> None:
    leases = [
        Lease("alive", "o-alive", "node", 1, expired=False),
        Lease("expired", "o-expired", "node", 2, expired=True),
        Lease("dead", "o-dead", "node", 3, expired=False),
        Lease("dead-expired", "o-dead2", "node", 4, expired=True),
        Lease("served", "o-served", "node", 5, expired=True),
    ]
    dead = {"o-dead", "o-dead2", "o-served"}
    assert takeovers(
        leases, lambda owner, node, pid: owner in dead, lambda room: room == "served"
    ) == [
        Takeover("expired", dead_owner=None),
        Takeover("dead", dead_owner="o-dead"),
        Takeover("dead-expired", dead_owner="o-dead2"),
    ]
    assert takeovers([], lambda *_: True, lambda _: False) == []


def row(message_id: str, room_id: str) -> MessageRow:
    return MessageRow(
        id=message_id,
        room_id=room_id,
        author="Tom",
        is_ai=True,
        content="",
        status="streaming",
        source="text",
        audio_url=None,
        created_at=datetime.now(UTC),
        completed_at=None,
        first_version=2,
        last_version=4,
    )


def test_an_orphan_is_closed_interrupted_with_its_text() -> None:
    orphan = StreamingReply(row("r9", "lounge"), "Half a sent")
    assert orphan_closing(orphan) == ReplyCompleted(
        message_id="r9",
        content="Half a sent",
        status="interrupted",
        error="the server writing this reply stopped",
    )


async def test_orphans_are_closed_one_append_each() -> None:
    appended: list[tuple[str, list[Event]]] = []

    async def append(room_id: str, events: Sequence[Event], /) -> None:
        appended.append((room_id, list(events)))

    orphans = [StreamingReply(row("r1", "lounge"), "one"), StreamingReply(row("r2", "lounge"), "")]
    assert await close_orphans("lounge", orphans, append) == 2
    assert appended == [
        ("lounge", [orphan_closing(orphans[0])]),
        ("lounge", [orphan_closing(orphans[1])]),
    ]
    assert await close_orphans("lounge", [], append) == 0
    assert len(appended) == 2


# -- RoomLeasing on real leases --------------------------------------------------------------


@dataclass
class RecordingRooms:
    """The reply loops' side of leasing, recording what it was asked."""

    served: set[str] = field(default_factory=set)
    kicked: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    stopped: list[tuple[str, str]] = field(default_factory=list)

    def kick(self, room_id: str) -> None:
        self.kicked.append(room_id)

    def serving(self, room_id: str) -> bool:
        return room_id in self.served

    def lease_lost(self, room_id: str) -> None:
        self.lost.append(room_id)

    def stop_here(self, room_id: str, message_id: str) -> bool:
        self.stopped.append((room_id, message_id))
        return True


@pytest.fixture
async def db(sqlite_url: str) -> AsyncIterator[Database]:
    await upgrade_async(sqlite_url)
    database = Database(sqlite_url)
    yield database
    await database.dispose()


def leases(db: Database, name: str, seconds: float = 30) -> ReplyLeases:
    me = ProcessIdentity.current()
    return ReplyLeases(db, replace(me, owner=f"{name}:{me.owner}"), seconds)


def leasing(db: Database, name: str, seconds: float = 30) -> tuple[RoomLeasing, RecordingRooms]:
    rooms = RecordingRooms()
    return RoomLeasing(leases(db, name, seconds), rooms), rooms


async def exited_pid() -> int:
    proc = await asyncio.create_subprocess_exec("true")
    await proc.wait()
    return proc.pid


def node_or_skip() -> str:
    node = ProcessIdentity.current().node
    if node is None:
        pytest.skip("no /proc here: dead owners are only found by expiry")
    return node


async def test_hold_and_let_go(db: Database) -> None:
    a, _ = leasing(db, "a")
    b, _ = leasing(db, "b")
    assert await a.hold("r")
    assert not await b.hold("r")
    await a.let_go("r")
    assert await b.hold("r")
    await a.let_go("r")  # no longer a's: releases nothing
    assert await b.leases.holder("r") == b.owner


async def test_renewal_acts_on_lost_leases_and_stops(db: Database) -> None:
    a, rooms = leasing(db, "a")
    b, _ = leasing(db, "b")
    assert await a.hold("kept") and await a.hold("taken")
    assert await a.renew() == Renewal()
    # b takes "taken" as if a had died, and asks a to stop the reply in "kept".
    assert await b.leases.acquire("taken", dead_owner=a.owner)
    assert await b.leases.request_stop("kept", "reply-1")
    assert await a.renew() == Renewal(lost=("taken",), stops=(("kept", "reply-1"),))
    assert rooms.lost == ["taken"] and rooms.stopped == [("kept", "reply-1")]
    await a.let_go("taken")
    assert await a.leases.holder("taken") == b.owner, "a lost lease is not a's to release"
    assert await a.renew() == Renewal(stops=(("kept", "reply-1"),)), "asked until let go"
    await a.let_go("kept")
    assert await a.renew() == Renewal(), "nothing held, nothing asked"
    assert rooms.lost == ["taken"]


async def test_the_watchdog_hands_dead_and_expired_rooms_over(db: Database) -> None:
    node = node_or_skip()
    pid = await exited_pid()
    dead = ReplyLeases(db, ProcessIdentity(f"gone:{pid}", node, pid), 30)
    parent = os.getppid()
    alive = ReplyLeases(db, ProcessIdentity(f"parent:{parent}", node, parent), 30)
    # Alive too, but it stopped renewing (a process under this one's pid would be seen dead).
    brief = ReplyLeases(db, ProcessIdentity(f"brief:{parent}", node, parent), 0.2)
    assert await dead.acquire("r-dead")
    assert await alive.acquire("r-alive")
    assert await brief.acquire("r-expired") and await brief.acquire("r-served")
    await asyncio.sleep(0.4)
    watcher, rooms = leasing(db, "watcher")
    rooms.served.add("r-served")  # its loop runs here already
    assert sorted(await watcher.sweep()) == ["r-dead", "r-expired"]
    assert sorted(rooms.kicked) == ["r-dead", "r-expired"]
    assert await watcher.hold("r-dead"), "a dead holder's unexpired lease is taken at once"
    assert await watcher.hold("r-expired")
    assert not await watcher.hold("r-alive")
    assert await watcher.leases.holder("r-alive") == alive.owner


async def test_recovery_hands_over_rooms_left_mid_reply(db: Database) -> None:
    node = node_or_skip()
    store = EventStore(db)
    store.start()
    try:
        for room in ("no-holder", "dead-holder", "live-holder", "idle"):
            await store.append(room, [ReplyStarted(message_id=f"reply-{room}", character="Tom")])
            if room != "idle":
                continue
            await store.append(
                room,
                [
                    ReplyChunk(message_id="reply-idle", index=0, text="done"),
                    ReplyCompleted(message_id="reply-idle", content="done", status="complete"),
                ],
            )
        pid = await exited_pid()
        dead = ReplyLeases(db, ProcessIdentity(f"gone:{pid}", node, pid), 30)
        # Another live process on this machine (one in this process's pid would be seen dead).
        live = ReplyLeases(db, ProcessIdentity(f"parent:{os.getppid()}", node, os.getppid()), 30)
        assert await dead.acquire("dead-holder") and await live.acquire("live-holder")
        reader = RoomReader(db)
        assert sorted(await reader.rooms_with_streaming_replies()) == [
            "dead-holder",
            "live-holder",
            "no-holder",
        ]
        recovering, rooms = leasing(db, "restarted")
        assert await recovering.recover(reader.rooms_with_streaming_replies) == 2
        assert sorted(rooms.kicked) == ["dead-holder", "no-holder"], "a live holder keeps it"
    finally:
        await store.close()


async def test_renewal_runs_until_closed(db: Database) -> None:
    a, _ = leasing(db, "a", seconds=0.3)
    b, _ = leasing(db, "b")
    assert await a.hold("r")
    a.start()
    a.start()  # once is enough
    await asyncio.sleep(0.8)
    assert not await b.hold("r"), "renewed past its length"
    await a.close()
    await asyncio.sleep(0.5)
    assert await b.hold("r"), "no longer renewed: it expired"

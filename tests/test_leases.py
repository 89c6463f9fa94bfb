"""Reply leases on both backends: one holder per room, expiry, dead owners, stop requests."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from tomchat.cluster.bus import ProcessIdentity
from tomchat.domain.events import MessagePosted, NewEvent, ReplyStarted
from tomchat.store.database import Database
from tomchat.store.event_store import EventStore, LeaseLost
from tomchat.store.leases import ReplyLeases
from tomchat.store.migrate import upgrade_async

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    await upgrade_async(database_url)
    database = Database(database_url)
    yield database
    await database.dispose()


def leases(db: Database, name: str, seconds: float = 30) -> ReplyLeases:
    me = ProcessIdentity.current()
    return ReplyLeases(db, replace(me, owner=f"{name}:{me.owner}"), seconds)


async def test_one_holder_until_released(db: Database) -> None:
    a, b = leases(db, "a"), leases(db, "b")
    assert await a.acquire("r")
    assert await a.acquire("r"), "taking a lease one holds is a no-op"
    assert not await b.acquire("r")
    assert await b.acquire("other"), "leases are per room"
    assert await a.holder("r") == a.owner
    await b.release("r")  # not b's to release
    assert await a.holder("r") == a.owner
    await a.release("r")
    assert await a.holder("r") is None
    assert await b.acquire("r")


async def test_only_one_of_many_contenders_wins(db: Database) -> None:
    contenders = [leases(db, f"p{i}") for i in range(12)]
    won = await asyncio.gather(*(c.acquire("busy") for c in contenders))
    assert sum(won) == 1
    [winner] = [c for c, w in zip(contenders, won, strict=True) if w]
    assert await winner.holder("busy") == winner.owner


async def test_renewal_keeps_it_and_expiry_hands_it_over(db: Database) -> None:
    a, b = leases(db, "a", seconds=0.6), leases(db, "b", seconds=0.6)
    assert await a.acquire("r")
    for _ in range(4):
        await asyncio.sleep(0.25)
        assert await a.renew(["r", "not-held"]) == {"r": None}
        assert not await b.acquire("r")
    [seen] = await b.held_elsewhere()
    assert (seen.room_id, seen.owner, seen.expired) == ("r", a.owner, False)
    await asyncio.sleep(0.8)
    [seen] = await b.held_elsewhere()
    assert seen.expired
    assert await b.acquire("r")
    assert await a.renew(["r"]) == {}, "the old owner learns it lost the lease"


async def test_a_dead_owner_is_taken_over_at_once(db: Database) -> None:
    me = ProcessIdentity.current()
    if me.node is None:
        pytest.skip("no /proc here: dead owners are only found by expiry")
    # A process that has exited: its pid is gone from this pid namespace.
    proc = await asyncio.create_subprocess_exec("true")
    await proc.wait()
    gone = ReplyLeases(db, ProcessIdentity(f"gone:{proc.pid}", me.node, proc.pid), 30)
    alive = ReplyLeases(db, ProcessIdentity(f"parent:{os.getppid()}", me.node, os.getppid()), 30)
    assert await gone.acquire("r1")
    assert await alive.acquire("r2")
    watcher = leases(db, "watcher")
    found = {lease.room_id: lease for lease in await watcher.held_elsewhere()}
    assert not found["r1"].expired and not found["r2"].expired
    dead = found["r1"]
    assert me.sees_dead(dead.owner, dead.node, dead.pid)
    assert not me.sees_dead(found["r2"].owner, found["r2"].node, found["r2"].pid)
    assert not me.sees_dead(dead.owner, "another-machine", dead.pid)
    assert not await watcher.acquire("r1")
    assert await watcher.acquire("r1", dead_owner=dead.owner)
    assert not await watcher.acquire("r2", dead_owner=dead.owner), "only the named owner"


async def test_stop_requests_reach_the_holder_on_renewal(db: Database) -> None:
    a, b = leases(db, "a"), leases(db, "b")
    assert not await b.request_stop("r", "reply-1"), "nobody holds it"
    assert await a.acquire("r")
    assert await b.request_stop("r", "reply-1")
    assert await a.renew(["r"]) == {"r": "reply-1"}
    await a.release("r")
    assert await a.acquire("r")
    assert await a.renew(["r"]) == {"r": None}, "a new hold starts without old requests"


async def test_appends_under_a_lost_lease_are_refused(store: EventStore) -> None:
    a, b = leases(store.db, "a", seconds=0.5), leases(store.db, "b", seconds=0.5)
    said = NewEvent(MessagePosted(message_id="m1", username="ann", content="hi"))
    assert await a.acquire("r")
    [first] = await store.append("r", [said], lease_owner=a.owner)
    with pytest.raises(LeaseLost):
        await store.append(
            "r", [ReplyStarted(message_id="x", character="Tom")], lease_owner=b.owner
        )
    await asyncio.sleep(0.7)
    assert await b.acquire("r"), "expired: b takes the room"
    late = store.append(
        "r", [ReplyStarted(message_id="late", character="Tom")], lease_owner=a.owner
    )
    mine = store.append("r", [ReplyStarted(message_id="b1", character="Tom")], lease_owner=b.owner)
    anyone = store.append("r", [MessagePosted(message_id="m2", username="bob", content="yo")])
    results = await asyncio.gather(late, mine, anyone, return_exceptions=True)
    assert isinstance(results[0], LeaseLost), "the old owner's append, refused"
    assert not isinstance(results[1], BaseException) and not isinstance(results[2], BaseException)
    assert await store.append("r", [said], lease_owner=a.owner) == [first], "a replay is no write"
    written = [e.event for e in await store.read_stream("r")]
    assert [getattr(e, "message_id", None) for e in written] == ["m1", "b1", "m2"]

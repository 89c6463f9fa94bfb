"""EventStore on both backends: versions, idempotency, group commit, projection rebuild."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import uuid

import pytest
from sqlalchemy import select

from tomchat.domain.events import (
    MessagePosted,
    NewEvent,
    ReplyChunk,
    ReplyCompleted,
    ReplyStarted,
    RoomCreated,
)
from tomchat.domain.transcript import Transcript
from tomchat.store.database import Database
from tomchat.store.event_store import (
    ConcurrencyError,
    EventStore,
    IdempotencyConflict,
    read_events,
)
from tomchat.store.migrate import upgrade_async
from tomchat.store.rebuild import rebuild_projections
from tomchat.store.rooms import RoomReader
from tomchat.store.schema import events, messages


async def test_versions_are_contiguous_per_room(store: EventStore) -> None:
    a = await store.append("a", [RoomCreated(name="A", character="Tom")])
    b = await store.append("b", [RoomCreated(name="B", character="Tom")])
    more = await store.append(
        "a",
        [
            MessagePosted(message_id="m1", username="ann", content="hi"),
            MessagePosted(message_id="m2", username="bob", content="yo"),
        ],
    )
    assert [e.version for e in a + more] == [1, 2, 3]
    assert [e.version for e in b] == [1]
    assert a[0].position < b[0].position < more[0].position < more[1].position
    read = await store.read_stream("a")
    assert [(e.version, e.event) for e in read] == [(e.version, e.event) for e in a + more]
    assert [e.version for e in await store.read_stream("a", after=1, limit=1)] == [2]
    assert await store.head("a") == 3
    assert await store.head("nowhere") is None


async def test_retried_append_returns_the_original_and_writes_nothing(store: EventStore) -> None:
    first = NewEvent(MessagePosted(message_id="m1", username="ann", content="hi"))
    original = await store.append("r", [first])
    again = await store.append("r", [first])
    assert again == original
    assert len(await store.read_stream("r")) == 1
    # Concurrent retries land in one batch: still one record.
    second = MessagePosted(message_id="m2", username="ann", content="hi")
    twice = await asyncio.gather(
        store.append("r", [NewEvent(second, uuid.UUID(int=7))]),
        store.append("r", [NewEvent(second, uuid.UUID(int=7))]),
    )
    assert twice[0] == twice[1]
    assert [e.version for e in await store.read_stream("r")] == [1, 2]


async def test_partial_replay_is_refused_without_harming_the_batch(store: EventStore) -> None:
    known = NewEvent(MessagePosted(message_id="m1", username="ann", content="hi"))
    await store.append("r", [known])
    fresh = NewEvent(MessagePosted(message_id="m2", username="ann", content="again"))
    mixed = store.append("r", [known, fresh])
    neighbour = store.append("r", [MessagePosted(message_id="m3", username="bob", content="ok")])
    results = await asyncio.gather(mixed, neighbour, return_exceptions=True)
    assert isinstance(results[0], IdempotencyConflict)
    assert not isinstance(results[1], BaseException)
    assert [e.version for e in await store.read_stream("r")] == [1, 2]


async def test_expected_version(store: EventStore) -> None:
    await store.append("r", [RoomCreated(name="r", character="Tom")], expected_version=0)
    with pytest.raises(ConcurrencyError):
        await store.append("r", [RoomCreated(name="r", character="Tom")], expected_version=0)
    assert await store.head("r") == 1


async def test_group_commit_under_concurrency(store: EventStore) -> None:
    """Many rooms appending at once: one transaction takes many appends, versions stay whole."""
    rooms = [f"room{i}" for i in range(25)]
    per_room = 40
    before = store.batches_written

    async def writer(room: str) -> None:
        await store.append(room, [RoomCreated(name=room, character="Tom")])
        await store.append(room, [MessagePosted(message_id=f"{room}-m", username="u", content="q")])
        await store.append(room, [ReplyStarted(message_id=f"{room}-r", character="Tom")])
        for i in range(per_room):
            await store.append(room, [ReplyChunk(message_id=f"{room}-r", index=i, text=f"w{i} ")])
            if random.random() < 0.3:
                await asyncio.sleep(0)
        text = "".join(f"w{i} " for i in range(per_room))
        await store.append(
            room, [ReplyCompleted(message_id=f"{room}-r", content=text, status="complete")]
        )

    await asyncio.gather(*(writer(r) for r in rooms))
    appends = len(rooms) * (per_room + 4)
    batches = store.batches_written - before
    assert batches < appends / 5, f"{appends} appends took {batches} transactions"
    for room in rooms:
        recorded = await store.read_stream(room)
        assert [e.version for e in recorded] == list(range(1, per_room + 5))
        chunks = [e.event for e in recorded if isinstance(e.event, ReplyChunk)]
        assert [c.index for c in chunks] == list(range(per_room))

    # The inline projection equals the pure fold of the log, and a rebuild changes nothing.
    reader = RoomReader(store.db)
    for room in rooms:
        folded = Transcript.fold(room, await store.read_stream(room)).rows
        projected, _ = await reader.page(room, None, 100)
        assert projected == folded
    before_rows = await _all_messages(store)
    report = await rebuild_projections(store.db)
    assert report.differences == 0
    assert report.rows == len(rooms) * 2
    assert await _all_messages(store) == before_rows


async def test_rebuild_restores_a_damaged_projection(store: EventStore) -> None:
    await store.append(
        "r",
        [
            RoomCreated(name="r", character="Tom"),
            MessagePosted(message_id="m1", username="ann", content="hi"),
        ],
    )
    good = await _all_messages(store)
    async with store.db.writer.begin() as conn:
        await conn.execute(messages.update().values(content="tampered"))
    assert (await rebuild_projections(store.db, check_only=True)).differences == 2
    report = await rebuild_projections(store.db)
    assert report.differences == 2 and report.replaced
    assert await _all_messages(store) == good


async def test_listeners_hear_commits_in_order(store: EventStore) -> None:
    heard: list[tuple[str, int]] = []
    store.subscribe(lambda batch: heard.extend((e.room_id, e.version) for e in batch))
    await asyncio.gather(
        *(
            store.append(
                f"r{i % 3}", [MessagePosted(message_id=f"m{i}", username="u", content="x")]
            )
            for i in range(30)
        )
    )
    for room in ("r0", "r1", "r2"):
        assert [v for r, v in heard if r == room] == list(range(1, 11))
    async with store.db.reader.connect() as conn:
        stored = (await conn.execute(select(events.c.event_id))).all()
    assert len(stored) == 30


async def test_two_processes_append_to_one_room(database_url: str) -> None:
    """Many writers in two processes at once: the room's versions stay whole, none twice."""
    await upgrade_async(database_url)
    writers, appends = 6, 30
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.append_writer",
            database_url,
            "shared",
            tag,
            str(writers),
            str(appends),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for tag in ("p1", "p2")
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"ready"
    for proc in procs:  # both start writing now
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    outputs = await asyncio.gather(*(proc.communicate() for proc in procs))
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
    reports = [json.loads(out) for out, _ in outputs]

    db = Database(database_url)
    try:
        async with db.snapshot() as conn:
            log = await read_events(conn, "shared")
    finally:
        await db.dispose()
    per_writer = appends + len(range(0, appends, 3))
    assert [e.version for e in log] == list(range(1, 2 * writers * per_writer + 1))
    assert len({e.event_id for e in log}) == len(log)
    stored = {e.event.message_id: e.version for e in log}  # type: ignore[union-attr]
    assert len(stored) == len(log)
    told: dict[str, list[int]] = {"p1": [], "p2": []}
    for tag, report in zip(("p1", "p2"), reports, strict=True):
        assert report["batches"] < writers * appends, "group commit batched the writers"
        for got in report["writers"]:
            versions = [version for _, version in got]
            assert versions == sorted(versions), "each writer's appends keep their order"
            assert all(stored[message_id] == version for message_id, version in got)
            told[tag] += versions
    if database_url.startswith("postgresql"):
        # The room's row lock queues the two processes' transactions: their versions
        # interleave. (SQLite's file lock is not fair: a busy writer may keep it to the end.)
        assert min(told["p1"]) < max(told["p2"]) and min(told["p2"]) < max(told["p1"])


async def _all_messages(store: EventStore) -> list[tuple[object, ...]]:
    async with store.db.reader.connect() as conn:
        rows = await conn.execute(select(messages).order_by(messages.c.id))
        return [tuple(r) for r in rows]

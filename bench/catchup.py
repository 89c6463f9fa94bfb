"""Catch-up: ``joinRoom`` into a room with 100,000 logged events and a reply in flight,
against the same join into a room of 100 events, same server, same run.

The log is written beforehand through ``EventStore.append``: both rooms end with the same
100-event tail (65 questions and one 30-chunk reply answering them), so a join reads the same
page of messages in both; the big room has ~3,000 more exchanges (a question, a reply start,
30 chunks, a completion) in front of it. Then ``tomchat serve`` (:mod:`bench.tomchat_server`) runs on that database, a driver
client keeps a reply streaming in each room (50 chunks/s, a new question after each
answer), and joiners — python-socketio clients, one username each, because joins are
rate-limited per connection and per name — join and leave the two rooms alternately, one
join at a time. The ack latency is the time ``sio.call("joinRoom")`` takes.

``python -m bench.catchup [--joins 200]`` writes ``bench/results/catchup.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import socketio
import uvloop

from bench.common import (
    Row,
    free_port,
    percentile,
    process,
    python_module,
    wait_for_port,
    write_result,
)
from tomchat.domain.events import (
    Event,
    MessagePosted,
    ReplyChunk,
    ReplyCompleted,
    ReplyStarted,
    RoomCreated,
    new_message_id,
)
from tomchat.store.database import Database
from tomchat.store.event_store import EventStore
from tomchat.store.migrate import upgrade_async

BIG, SMALL = 100_000, 100
CHUNKS = 30
TAIL_MESSAGES = 65  # + one 32-event reply + 3 first events = the 100-event room
JOINS_PER_CONNECTION = 10  # within the per-connection join burst (LiveLimits.joins)


def _question(n: int) -> MessagePosted:
    return MessagePosted(message_id=new_message_id(), username=f"user{n % 7}", content=f"q {n}")


def _exchange(n: int) -> list[Event]:
    reply = new_message_id()
    words = [f" word{i}" for i in range(CHUNKS)]
    return [
        _question(n),
        ReplyStarted(message_id=reply, character="Tom"),
        *(ReplyChunk(message_id=reply, index=i, text=w) for i, w in enumerate(words)),
        ReplyCompleted(message_id=reply, content="".join(words), status="complete"),
    ]


async def seed(url: str, rooms: dict[str, int]) -> None:
    """Each room gets exactly its number of events, as finished exchanges."""
    await upgrade_async(url)
    db = Database(url)
    store = EventStore(db)
    try:
        for room, size in rooms.items():
            greeting = new_message_id()
            first: list[Event] = [
                RoomCreated(name=room, character="Tom"),
                ReplyStarted(message_id=greeting, character="Tom"),
                ReplyCompleted(message_id=greeting, content="Hi!", status="complete"),
            ]
            await store.append(room, first)
            # Both rooms end with the same tail, so the snapshot page a join reads is alike;
            # the big room has ~100,000 older events in front of it.
            body = size - len(first) - TAIL_MESSAGES - (len(_exchange(0)) - 1)
            exchanges, pad = divmod(body, len(_exchange(0)))
            pending: list[Event] = [_question(i) for i in range(pad)]
            for n in range(exchanges):
                pending += _exchange(n)
                if len(pending) >= 1000:
                    await store.append(room, pending)
                    pending = []
            # The tail: questions, then one reply answering them all (nobody left waiting).
            pending += [_question(i) for i in range(TAIL_MESSAGES)] + _exchange(exchanges)[1:]
            await store.append(room, pending)
    finally:
        await store.close()
        await db.dispose()


async def driver(url: str, room: str) -> socketio.AsyncClient:
    """Keeps a reply streaming in ``room``: a question, and another after each answer."""
    sio = socketio.AsyncClient(reconnection=False)
    asked = 0
    tasks: set[asyncio.Task[Any]] = set()

    async def ask() -> None:
        nonlocal asked
        asked += 1
        ack = await sio.call(
            "sendMessage", {"roomId": room, "content": f"go on {asked}"}, timeout=30
        )
        if not ack.get("ok"):
            raise RuntimeError(f"sendMessage failed: {ack}")

    async def on_complete(_payload: dict[str, Any]) -> None:
        task = asyncio.create_task(ask())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    sio.on("aiComplete", on_complete)
    await sio.connect(url, transports=["websocket"], wait_timeout=30)
    await sio.call("joinRoom", {"roomId": room, "username": f"driver-{room}"}, timeout=30)
    await ask()
    return sio


async def measure(url: str, rooms: list[str], joins: int) -> dict[str, dict[str, Any]]:
    latencies: dict[str, list[float]] = {r: [] for r in rooms}
    in_flight = dict.fromkeys(rooms, 0)
    versions: dict[str, int] = {}
    connections = -(-joins * len(rooms) // JOINS_PER_CONNECTION)
    turn = 0
    for c in range(connections):
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(url, transports=["websocket"], wait_timeout=30)
        try:
            for _ in range(JOINS_PER_CONNECTION):
                room = rooms[turn % len(rooms)]
                turn += 1
                if len(latencies[room]) >= joins:
                    continue
                started = time.perf_counter()
                # Each joiner keeps one member key: its name is bound to it in both rooms.
                join = {"roomId": room, "username": f"j{c}", "memberKey": f"bench-joiner-{c:010d}"}
                ack = await sio.call("joinRoom", join, timeout=30)
                latencies[room].append((time.perf_counter() - started) * 1000)
                if not ack.get("ok"):
                    raise RuntimeError(f"joinRoom failed: {ack}")
                in_flight[room] += bool(ack["streaming"])
                versions[room] = ack["version"]
                await sio.call("leaveRoom", {"roomId": room}, timeout=30)
        finally:
            await sio.disconnect()
    return {
        room: {
            "joins": len(latencies[room]),
            "joins_with_a_reply_in_flight": in_flight[room],
            "room_version": versions[room],
            "p50_ms": percentile(latencies[room], 50),
            "p99_ms": percentile(latencies[room], 99),
            "max_ms": max(latencies[room]),
        }
        for room in rooms
    }


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, dict[str, Any]]:
    big, small = f"big-{uuid.uuid4().hex[:6]}", f"small-{uuid.uuid4().hex[:6]}"
    url = f"sqlite+aiosqlite:///{workdir / 'catchup.db'}"
    await seed(url, {big: BIG, small: SMALL})
    port = free_port()
    command = python_module(
        "bench.tomchat_server", "--port", str(port), "--database-url", url, "--chunks", "250"
    )
    log = workdir / "server.log"
    with process(command, log=log) as server:
        await asyncio.to_thread(wait_for_port, port, server)
        base = f"http://127.0.0.1:{port}"
        drivers = [await driver(base, big), await driver(base, small)]
        await asyncio.sleep(1.0)  # both replies streaming
        try:
            result = await measure(base, [big, small], args.joins)
        finally:
            for d in drivers:
                await d.disconnect()
    if os.environ.get("BENCH_TRACE"):
        print(log.read_text(), file=sys.stderr)
    return {"big": result[big], "small": result[small]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--joins", type=int, default=200, help="joins into each room")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tomchat-catchup-") as tmp:
        got = uvloop.run(run(args, Path(tmp)))
    big, small = got["big"], got["small"]
    rows = [
        Row(
            "catch-up 100k events: joinRoom ack p50",
            big["p50_ms"],
            None,
            "ms",
            "≤ 20 ms",
            big["p50_ms"] <= 20,
        ),
        Row(
            "catch-up 100k vs 100 events: ack p50",
            big["p50_ms"],
            small["p50_ms"],
            "ms",
            "≤ 1.5x",
            big["p50_ms"] <= 1.5 * small["p50_ms"],
        ),
        Row(
            "catch-up 100k vs 100 events: ack p99",
            big["p99_ms"],
            small["p99_ms"],
            "ms",
            "≤ 1.5x",
            big["p99_ms"] <= 1.5 * small["p99_ms"],
        ),
    ]
    write_result("catchup", rows, {"big": big, "small": small}, started)
    print(json.dumps(got))


if __name__ == "__main__":
    main()

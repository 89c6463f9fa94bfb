"""Socket.IO clients for the relay benchmark, run as a process of their own.

``python -m bench.relay_clients --url U --room-prefix P --rooms R --clients C --shard i/n``
connects this shard's share of the R x C clients (python-socketio ``AsyncClient``), joins
them, lets client 0 of each room keep its room talking (one message, then another after each
``aiComplete``), prints ``READY``, reads ``<t0> <t1>`` (wall-clock seconds) from stdin, and
prints one JSON line: the model's pieces received between t0 and t1 and their latencies
(receipt time minus the production stamp of each piece in the chunk).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import socketio
import uvloop

from bench.stamped import pieces_produced_at


class Stats:
    def __init__(self) -> None:
        self.window = (float("inf"), float("inf"))
        self.deliveries = 0
        self.latencies_ms: list[float] = []
        self.outside = 0
        self.replies = 0
        # From a driver's sendMessage to the first piece of the reply it asked for.
        self.turnarounds_ms: list[float] = []
        self.errors: list[str] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def chunk(self, payload: dict[str, Any]) -> None:
        now = time.time()
        if self.window[0] <= now < self.window[1]:
            # A delivery is one piece of the model's text reaching one client: a chunk that
            # carries several (coalesced under load) delivers each, each with its latency.
            for at in pieces_produced_at(payload["chunk"]):
                self.deliveries += 1
                self.latencies_ms.append(round((now - at) * 1000, 3))
        else:
            self.outside += 1


async def client(
    url: str, room: str, username: str, driver: bool, stats: Stats
) -> socketio.AsyncClient:
    sio = socketio.AsyncClient(reconnection=False)
    asked_at: float | None = None

    async def on_chunk(payload: dict[str, Any]) -> None:
        nonlocal asked_at
        stats.chunk(payload)
        if asked_at is not None:
            now = time.time()
            if stats.window[0] <= asked_at and now < stats.window[1]:
                stats.turnarounds_ms.append(round((now - asked_at) * 1000, 3))
            asked_at = None

    async def say(n: int) -> None:
        nonlocal asked_at
        asked_at = time.time()
        ack = await sio.call(
            "sendMessage", {"roomId": room, "content": f"tell me about rivers {n}"}, timeout=30
        )
        if not ack.get("ok"):
            stats.errors.append(f"sendMessage: {ack}")

    async def on_complete(payload: dict[str, Any]) -> None:
        stats.replies += 1
        if driver:
            task = asyncio.create_task(say(stats.replies))
            stats.tasks.add(task)
            task.add_done_callback(stats.tasks.discard)

    sio.on("aiTextChunk", on_chunk)
    sio.on("aiComplete", on_complete)
    await sio.connect(url, transports=["websocket"], wait_timeout=30)
    ack = await sio.call("joinRoom", {"roomId": room, "username": username}, timeout=30)
    if not ack.get("ok"):
        raise RuntimeError(f"joinRoom failed: {ack}")
    if driver:
        await say(0)
    return sio


async def run(args: argparse.Namespace) -> None:
    stats = Stats()
    shard, shards = (int(x) for x in args.shard.split("/"))
    mine = [
        (r, c)
        for r in range(args.rooms)
        for c in range(args.clients)
        if (r * args.clients + c) % shards == shard
    ]
    clients: list[socketio.AsyncClient] = []
    # Connect in small waves so the handshakes don't time out on a busy machine.
    for start in range(0, len(mine), 20):
        wave = mine[start : start + 20]
        clients += await asyncio.gather(
            *(
                client(args.url, f"{args.room_prefix}-{r}", f"user{r}-{c}", c == 0, stats)
                for r, c in wave
            )
        )
    print("READY", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    t0, t1 = (float(x) for x in line.split())
    stats.window = (t0, t1)
    await asyncio.sleep(max(0.0, t1 - time.time()) + 0.2)
    print(
        json.dumps(
            {
                "clients": len(clients),
                "deliveries": stats.deliveries,
                "latencies_ms": stats.latencies_ms,
                "outside_window": stats.outside,
                "replies_seen": stats.replies,
                "turnarounds_ms": stats.turnarounds_ms,
                "errors": stats.errors[:5],
            }
        ),
        flush=True,
    )
    await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--room-prefix", required=True)
    parser.add_argument("--rooms", type=int, required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--shard", default="0/1")
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

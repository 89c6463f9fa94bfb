"""Clients join, leave and reconnect at random moments across several replies; every one of
them must end with the server's transcript, having applied each version once, in order."""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from tests.conftest import RunningServer
from tests.support.room_client import RoomClient

pytestmark = pytest.mark.timeout(120)

SEED = int(os.environ.get("TOMCHAT_TEST_SEED", "20261124"))


@pytest.mark.parametrize("seed", [SEED, SEED + 1])
async def test_random_joins_leaves_and_reconnects(server: RunningServer, seed: int) -> None:
    rng = random.Random(seed)
    room = f"chaos{seed}"
    clients = [RoomClient(server.url, room, f"user{i}") for i in range(4)]
    for c in clients:
        await c.connect()
        await c.join()
    online = set(range(len(clients)))

    async def churn(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(0.01, 0.15))
            i = rng.randrange(len(clients))
            if i in sending:
                continue  # a connection is not cut under its own pending ack
            c = clients[i]
            if i in online and rng.random() < 0.5:
                await c.disconnect()
                online.discard(i)
            elif i not in online:
                if rng.random() < 0.7:
                    await c.reconnect()  # resume with since
                else:
                    c.sio = type(c.sio)()
                    await c.connect()
                    await c.join()  # a fresh snapshot
                online.add(i)

    sending: set[int] = set()
    stop = asyncio.Event()
    churner = asyncio.create_task(churn(stop))
    for n in range(6):
        senders = [clients[i] for i in sorted(online)] or []
        if senders:
            sender = rng.choice(senders)
            sending.add(clients.index(sender))
            ack = await sender.send(
                f"question {n} about {rng.choice(['cats', 'tea', 'rain', 'maps'])}"
            )
            sending.clear()
            assert ack["ok"], ack
        await asyncio.sleep(rng.uniform(0.1, 0.6))
    stop.set()
    await churner

    # Let every reply finish, then bring everybody back.
    async with asyncio.timeout(60):
        while await server.services.reader.unanswered(
            room
        ) or server.services.conversation.streaming_in(room):
            await asyncio.sleep(0.1)
    for i, c in enumerate(clients):
        if i not in online:
            await c.reconnect()
    head = await server.services.store.head(room)
    rows, _ = await server.services.reader.page(room, None, 200)
    expected = {r.id: (r.author, r.is_ai, r.content, r.status) for r in rows}
    assert all(r.status != "streaming" for r in rows)
    for c in clients:
        await c.wait_for(lambda c: c.version == head)
        got = {x.id: (x.author, x.is_ai, x.content, x.status) for x in c.lines.values()}
        assert got == expected, f"seed {seed}: {c.username} differs"
        assert c.applied == list(range(c.applied[0], head + 1)), f"seed {seed}: {c.username} order"
        await c.disconnect()

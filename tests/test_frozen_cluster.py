"""A process frozen (SIGSTOP) inside an open write transaction on PostgreSQL never stalls the
cluster: the other process keeps appending to every other room, takes the frozen room's reply
over within the lease (plus a second), and when the frozen process wakes nothing is lost or
written twice. Figures are printed, not asserted as limits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.support.room_client import RoomClient
from tests.support.servers import ServerProcess, start_servers
from tests.test_scale_out import (  # noqa: F401  (fixtures)
    as_table,
    client,
    cluster_env,
    contiguous,
    redis_env,
    room_log,
    streaming,
    table_of,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(180)]

LEASE = 2.0


@pytest.fixture
async def frozen_pair(
    cluster_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    env = {**cluster_env, "TOMCHAT_DB_LOCK_TIMEOUT": "0.5", "TOMCHAT_DEMO_DELAY_MS": "30"}
    a, b = await start_servers(env, tmp_path, ["a", "b"])
    yield a, b
    with contextlib.suppress(ProcessLookupError):
        os.kill(a.pid, signal.SIGCONT)
    a.stop()
    b.stop()


async def in_write_transaction(admin: asyncpg.Connection, pid: int) -> bool:
    """True while a session of process ``pid`` sits inside a transaction that has written
    (it holds a transaction id, so its rows stay locked until it ends)."""
    found: int = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
        "AND state = 'idle in transaction' AND backend_xid IS NOT NULL",
        f"tomchat-{pid}",
    )
    return found > 0


async def test_a_process_frozen_inside_a_write_transaction_stalls_nothing(
    frozen_pair: tuple[ServerProcess, ServerProcess], postgres_url: str
) -> None:
    a, b = frozen_pair
    admin = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
    ann = await client(a.url, "frozen", "ann")
    await ann.join()
    bob = await client(b.url, "frozen", "bob")
    await bob.join()
    await ann.send("Describe every planet of the solar system in great detail")
    await bob.wait_for(lambda c: streaming(c) is not None)
    reply = streaming(bob)
    assert reply is not None
    # Chatter on A keeps its appender in a transaction most of the time.
    talkers = [await client(a.url, f"busy-{i}", f"t{i}") for i in range(4)]
    for t in talkers:
        await t.join()
    chatting = True

    async def chatter(t: RoomClient) -> None:
        n = 0
        while chatting:
            with contextlib.suppress(Exception):
                await t.send(f"line {n}")
            n += 1

    chat_tasks = [asyncio.create_task(chatter(t)) for t in talkers]
    rng = random.Random(7)
    tries = 0
    try:
        while True:
            tries += 1
            assert tries < 400, "never caught A inside a write transaction"
            await asyncio.sleep(rng.random() * 0.02)
            os.kill(a.pid, signal.SIGSTOP)
            frozen = time.monotonic()
            await asyncio.sleep(0.05)  # let the server see its session go idle
            if await in_write_transaction(admin, a.pid):
                break
            os.kill(a.pid, signal.SIGCONT)
        print(f"\nA frozen inside a write transaction after {tries} tries")

        # B keeps appending to other rooms: every ack timed.
        carol = await client(b.url, "elsewhere", "carol")
        await carol.join()
        latencies = []
        for n in range(8):  # within the per-address burst of the rate limit
            sent = time.monotonic()
            ack = await carol.send(f"still here {n}")
            assert ack["ok"], ack
            latencies.append(time.monotonic() - sent)
            await asyncio.sleep(0.05)
        await bob.wait_for(lambda c: c.status_of(reply) == "interrupted", timeout=LEASE + 15)
        closed_after = time.monotonic() - frozen
        held_lock = await in_write_transaction(admin, a.pid)
    finally:
        os.kill(a.pid, signal.SIGCONT)
        chatting = False
    p99 = sorted(latencies)[int(0.99 * (len(latencies) - 1))]
    print(
        f"other rooms' appends while A was frozen: p50 {statistics.median(latencies) * 1000:.0f}"
        f" ms, p99 {p99 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
    )
    print(f"frozen room's reply closed {closed_after:.2f} s after the freeze (lease {LEASE} s)")
    print(f"A's transaction still open when the reply was closed: {held_lock}")
    for task in chat_tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # A wakes: the room goes on, nothing lost or written twice.
    await ann.send("Are you back?")

    def answered(c: RoomClient) -> bool:
        return sum(1 for x in c.lines.values() if x.is_ai and x.status == "complete") >= 2

    await bob.wait_for(answered, timeout=30)
    await ann.wait_for(answered, timeout=30)
    for room in ("frozen", "elsewhere", *(f"busy-{i}" for i in range(4))):
        log = await room_log(postgres_url, room)
        assert [e.version for e in log] == list(range(1, len(log) + 1)), room
        assert len({e.event_id for e in log}) == len(log)
    log = await room_log(postgres_url, "frozen")
    assert as_table(bob) == as_table(ann) == table_of(log)
    assert contiguous(bob)
    carol_log = await room_log(postgres_url, "elsewhere")
    said = [e for e in carol_log if e.event.__class__.__name__ == "MessagePosted"]
    assert len(said) == 8
    for c in (ann, bob, carol, *talkers):
        await c.disconnect()
    await admin.close()

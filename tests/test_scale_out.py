"""Several ``tomchat serve`` processes, one PostgreSQL, one Redis: one room as if one server.

Real processes (started, killed with SIGKILL, stopped with SIGTERM) and the real
python-socketio client (``RoomClient``, which follows DESIGN §2's ordering rules and fills
holes with ``resync``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REDIS_URL, need_service
from tests.live.test_typing import Typist
from tests.support.room_client import RoomClient
from tests.support.room_log import room_log
from tests.support.servers import ServerProcess, start_servers
from tomchat.ai.demo import compose_reply
from tomchat.ai.protocols import ChatTurn
from tomchat.domain.events import RecordedEvent, ReplyChunk, ReplyCompleted, ReplyStarted
from tomchat.domain.transcript import Transcript

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(120)]

LEASE_SECONDS = 2.0


@pytest.fixture
def redis_env() -> Iterator[dict[str, str]]:
    """Redis settings with a prefix of this test's own: other runs on the same Redis (other
    tests, other people) share neither channels nor keys with it."""
    parts = urlsplit(REDIS_URL)
    need_service("Redis", parts.hostname or "127.0.0.1", parts.port or 6379)
    prefix = f"tomchat-test-{uuid.uuid4().hex[:10]}"
    yield {"TOMCHAT_REDIS_URL": REDIS_URL, "TOMCHAT_REDIS_PREFIX": prefix}
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture
def cluster_env(postgres_url: str, redis_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {
        **redis_env,
        "TOMCHAT_DATABASE_URL": postgres_url,
        "TOMCHAT_MEDIA_DIR": str(tmp_path / "media"),
        "TOMCHAT_LLM": "demo",
        "TOMCHAT_TTS": "none",
        "TOMCHAT_ASR": "none",
        "TOMCHAT_DEMO_DELAY_MS": "50",
        "TOMCHAT_REPLY_LEASE_SECONDS": str(LEASE_SECONDS),
    }


@pytest.fixture
async def two_servers(
    cluster_env: dict[str, str], tmp_path: Path
) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    # Started together: their migrations race, and the advisory lock must sort that out.
    a, b = await start_servers(cluster_env, tmp_path, ["a", "b"])
    yield a, b
    a.stop()
    b.stop()


async def client(url: str, room: str, user: str) -> RoomClient:
    c = RoomClient(url, room, user)
    await c.connect()
    return c


def streaming(c: RoomClient, longer_than: int = 0) -> str | None:
    for line in c.lines.values():
        if line.is_ai and line.status == "streaming" and len(line.content) > longer_than:
            return line.id
    return None


def as_table(c: RoomClient) -> dict[str, tuple[str, bool, str, str]]:
    return {x.id: (x.author, x.is_ai, x.content, x.status) for x in c.lines.values()}


def contiguous(c: RoomClient) -> bool:
    return c.applied == list(range(c.applied[0], c.version + 1))


def table_of(log: list[RecordedEvent]) -> dict[str, tuple[str, bool, str, str]]:
    rows = Transcript.fold(log[0].room_id, log).rows
    return {r.id: (r.author, r.is_ai, r.content, r.status) for r in rows}


def expected_reply(*lines: str) -> str:
    return compose_reply([ChatTurn("user", line) for line in lines])


async def test_a_room_spread_over_two_processes(
    two_servers: tuple[ServerProcess, ServerProcess], postgres_url: str
) -> None:
    a, b = two_servers
    ann = await client(a.url, "shared", "ann")
    await ann.join()
    bob = await client(b.url, "shared", "bob")
    await bob.join()
    # Presence spans the processes.
    await ann.wait_for(lambda c: c.presence == ["ann", "bob"])
    await bob.wait_for(lambda c: c.presence == ["ann", "bob"])

    story = "Tell me a long story about dragons and castles"
    await ann.send(story)
    await bob.wait_for(lambda c: streaming(c, 20) is not None)
    first = streaming(bob)
    assert first is not None

    # Carol joins on B in the middle of the reply A is writing, and asks something.
    carol = await client(b.url, "shared", "carol")
    ack = await carol.join()
    [so_far] = ack["streaming"]
    assert so_far["messageId"] == first and so_far["content"]
    asked = await carol.send("And what about the knights?")
    assert asked["ok"]

    def done(c: RoomClient) -> bool:
        return sum(1 for x in c.lines.values() if x.is_ai and x.status == "complete") == 3

    for c in (ann, bob, carol):
        await c.wait_for(done, timeout=40)
    whole = expected_reply(f"ann: {story}")
    assert ann.text_of(first) == bob.text_of(first) == carol.text_of(first) == whole

    log = await room_log(postgres_url, "shared")
    assert [e.version for e in log] == list(range(1, len(log) + 1))
    started = [e for e in log if isinstance(e.event, ReplyStarted)]
    assert [e.event.message_id for e in started][1] == first
    # Carol's question is answered once, by the reply after the one she interrupted.
    answering = [e for e in started if asked["messageId"] in e.event.in_reply_to]
    assert len(answering) == 1 and answering[0] == started[2]
    assert started[2].event.in_reply_to == (asked["messageId"],)
    first_done = next(
        e for e in log if isinstance(e.event, ReplyCompleted) and e.event.message_id == first
    )
    assert first_done.version < started[2].version
    for c in (ann, bob, carol):
        assert contiguous(c), (c.username, c.applied)
        assert as_table(c) == table_of(log), c.username
    for c in (ann, bob, carol):
        await c.disconnect()


async def test_kill_9_mid_reply_loses_nothing(
    two_servers: tuple[ServerProcess, ServerProcess], postgres_url: str
) -> None:
    a, b = two_servers
    ann = await client(a.url, "crash", "ann")
    await ann.join()
    bob = await client(b.url, "crash", "bob")
    await bob.join()
    speech = "Give me a very long speech about the ocean and its waves"
    await ann.send(speech)  # A takes the room's lease and writes the reply
    await bob.wait_for(lambda c: streaming(c, 15) is not None)
    reply = streaming(bob)
    assert reply is not None
    seen = bob.text_of(reply)

    a.kill()
    killed = time.monotonic()
    await bob.wait_for(lambda c: c.status_of(reply) == "interrupted", timeout=LEASE_SECONDS + 10)
    took = time.monotonic() - killed
    assert took < LEASE_SECONDS + 1.5, f"the reply was closed {took:.1f}s after the kill"

    partial = bob.text_of(reply)
    whole = expected_reply(f"ann: {speech}")
    assert partial.startswith(seen) and whole.startswith(partial) and partial != whole
    log = await room_log(postgres_url, "crash")
    assert [e.version for e in log] == list(range(1, len(log) + 1))
    committed = "".join(
        e.event.text for e in log if isinstance(e.event, ReplyChunk) and e.event.message_id == reply
    )
    [closed] = [
        e for e in log if isinstance(e.event, ReplyCompleted) and e.event.message_id == reply
    ]
    assert closed.event.content == committed == partial
    assert closed.event.status == "interrupted"
    assert not any(isinstance(e.event, ReplyChunk) and e.version > closed.version for e in log), (
        "nothing of the dead writer after the close"
    )
    assert contiguous(bob) and bob.version == log[-1].version
    assert as_table(bob) == table_of(log)

    # Ann, cut off with A, resumes on B from where she was: no hole, no duplicate.
    left_at = ann.version
    await ann.disconnect()
    ann.url = b.url
    ack = await ann.reconnect()
    assert [e["version"] for e in ack["events"]] == list(range(left_at + 1, ack["version"] + 1))
    await ann.wait_for(lambda c: c.status_of(reply) == "interrupted")
    assert contiguous(ann) and ann.text_of(reply) == partial
    assert as_table(ann) == as_table(bob)

    # The room goes on, served by B alone.
    await ann.send("Are you still there?")

    def answered(c: RoomClient) -> bool:
        return sum(1 for x in c.lines.values() if x.is_ai and x.status == "complete") == 2

    await bob.wait_for(answered, timeout=30)
    await ann.wait_for(answered, timeout=30)
    assert as_table(ann) == as_table(bob) == table_of(await room_log(postgres_url, "crash"))
    assert "Traceback" not in b.output(), b.output()
    await ann.disconnect()
    await bob.disconnect()


async def test_a_frozen_writer_is_taken_over_at_expiry_and_fenced_off(
    two_servers: tuple[ServerProcess, ServerProcess], postgres_url: str
) -> None:
    """SIGSTOP: the writer is alive (its pid exists), so only its lease running out lets B
    take the room; when it wakes up, whatever it still tries to write is refused."""
    a, b = two_servers
    ann = await client(a.url, "frozen", "ann")
    await ann.join()
    bob = await client(b.url, "frozen", "bob")
    await bob.join()
    await ann.send("Describe every planet of the solar system in great detail")
    await bob.wait_for(lambda c: streaming(c, 15) is not None)
    reply = streaming(bob)
    assert reply is not None

    os.kill(a.pid, signal.SIGSTOP)
    try:
        frozen = time.monotonic()
        await bob.wait_for(
            lambda c: c.status_of(reply) == "interrupted", timeout=LEASE_SECONDS + 10
        )
        took = time.monotonic() - frozen
    finally:
        os.kill(a.pid, signal.SIGCONT)
    # Renewed every third of the lease: it ran out between 2/3 and 3/3 of it after the stop.
    assert LEASE_SECONDS / 2 < took < LEASE_SECONDS + 1.5, took
    closed_text = bob.text_of(reply)

    # A wakes up mid-reply: its next appends are refused, and it says so.
    async def a_noticed() -> bool:
        return "taken over by another process" in a.output()

    deadline = time.monotonic() + 10
    while not await a_noticed():
        assert time.monotonic() < deadline, a.output()
        await asyncio.sleep(0.1)
    log = await room_log(postgres_url, "frozen")
    [closed] = [
        e for e in log if isinstance(e.event, ReplyCompleted) and e.event.message_id == reply
    ]
    assert closed.event.content == closed_text and closed.event.status == "interrupted"
    assert not any(
        isinstance(e.event, ReplyChunk | ReplyCompleted)
        and e.event.message_id == reply
        and e.version > closed.version
        for e in log
    )
    assert [e.version for e in log] == list(range(1, len(log) + 1))

    # Both processes go on serving the room, one reply at a time.
    await ann.send("Are you back?")

    def answered(c: RoomClient) -> bool:
        return sum(1 for x in c.lines.values() if x.is_ai and x.status == "complete") == 2

    await ann.wait_for(answered, timeout=30)
    await bob.wait_for(answered, timeout=30)
    assert as_table(ann) == as_table(bob) == table_of(await room_log(postgres_url, "frozen"))
    await ann.disconnect()
    await bob.disconnect()


async def test_sigterm_closes_the_reply_and_hands_the_queue_over(
    two_servers: tuple[ServerProcess, ServerProcess], postgres_url: str
) -> None:
    a, b = two_servers
    ann = await client(a.url, "handover", "ann")
    await ann.join()
    bob = await client(b.url, "handover", "bob")
    await bob.join()
    await ann.send("Tell me everything about lighthouses and their keepers")
    await bob.wait_for(lambda c: streaming(c, 10) is not None)
    reply = streaming(bob)
    assert reply is not None
    waiting = await bob.send("Wait, and what about the ships?")  # queued behind A's reply

    status = await a.terminate()
    assert status in (0, -15), a.output()
    assert "Application shutdown complete" in a.output(), a.output()
    await bob.wait_for(lambda c: c.status_of(reply) == "interrupted", timeout=10)

    # B answers what was waiting: A handed the room over as it stopped.
    def answered(c: RoomClient) -> bool:
        return any(
            x.is_ai and x.status == "complete" and x.first_version > waiting["version"]
            for x in c.lines.values()
        )

    await bob.wait_for(answered, timeout=20)
    log = await room_log(postgres_url, "handover")
    started = [e.event for e in log if isinstance(e.event, ReplyStarted)]
    assert started[-1].in_reply_to == (waiting["messageId"],)
    assert [e.version for e in log] == list(range(1, len(log) + 1))
    assert contiguous(bob) and as_table(bob) == table_of(log)
    await ann.disconnect()
    await bob.disconnect()


async def test_stop_asked_of_the_other_process(
    two_servers: tuple[ServerProcess, ServerProcess], postgres_url: str
) -> None:
    a, b = two_servers
    ann = await client(a.url, "stopper", "ann")
    await ann.join()
    bob = await client(b.url, "stopper", "bob")
    await bob.join()
    await ann.send("Recite a very long poem about autumn leaves please")
    await bob.wait_for(lambda c: streaming(c, 10) is not None)
    reply = streaming(bob)
    assert reply is not None
    asked = time.monotonic()
    assert await bob.call("stopGeneration", {"roomId": "stopper", "messageId": reply}) == {
        "ok": True
    }
    await bob.wait_for(lambda c: c.status_of(reply) == "stopped", timeout=10)
    # The signal is prompt; the lease row would have done it at the next renewal anyway.
    assert time.monotonic() - asked < LEASE_SECONDS
    await ann.wait_for(lambda c: c.status_of(reply) == "stopped")
    assert ann.text_of(reply) == bob.text_of(reply)
    log = await room_log(postgres_url, "stopper")
    assert as_table(bob) == table_of(log)
    await ann.disconnect()
    await bob.disconnect()


async def test_workers_share_one_port(cluster_env: dict[str, str], tmp_path: Path) -> None:
    [server] = await start_servers(cluster_env, tmp_path, ["workers"], args=["--workers", "2"])
    try:
        people = [await client(server.url, "busy", name) for name in ("ann", "bob", "cy", "di")]
        for p in people:
            await p.join()
        for p in people:
            await p.wait_for(lambda c: c.presence == ["ann", "bob", "cy", "di"])
        question = "What is the best way to brew tea?"
        await people[0].send(question)
        whole = expected_reply(f"ann: {question}")
        for p in people:
            await p.wait_for(
                lambda c: any(x.is_ai and x.content == whole for x in c.lines.values()), timeout=30
            )
            assert contiguous(p)
        assert len({str(as_table(p)) for p in people}) == 1
        # /metrics on whichever worker answers sums both (prometheus-client multi-process).
        async with httpx.AsyncClient() as http:
            for _ in range(4):
                text = (await http.get(f"{server.url}/metrics")).text
                [sockets] = [
                    s.value
                    for f in text_string_to_metric_families(text)
                    for s in f.samples
                    if s.name == "tomchat_connected_sockets"
                ]
                assert sockets == 4, text
        for p in people:
            await p.disconnect()
        status = await server.terminate()
        assert status in (0, -15), server.output()
        output = server.output()
        assert output.count("Application startup complete") == 2, output
        assert output.count("Application shutdown complete") == 2, output
    finally:
        server.stop()


async def test_typing_reaches_the_other_process_but_not_the_writer(
    two_servers: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = two_servers
    ann, carol = Typist(a.url, "typed", "ann"), Typist(a.url, "typed", "carol")
    bob = Typist(b.url, "typed", "bob")
    for c in (ann, carol, bob):
        await c.connect()
        await c.join()
    await ann.wait_for(lambda c: c.presence == ["ann", "bob", "carol"])

    assert await ann.typing() == {"ok": True}
    for c in (bob, carol):
        await c.wait_for(lambda c: c.typed)
        assert c.typed == [{"roomId": "typed", "username": "ann"}]
    # bob's notice, sent after ann's was fanned out, is the first and only one ann gets.
    assert await bob.typing() == {"ok": True}
    await ann.wait_for(lambda c: c.typed)
    assert ann.typed == [{"roomId": "typed", "username": "bob"}]
    for c in (ann, carol, bob):
        await c.disconnect()

"""Presence across processes in Redis: members of every live process, dead ones drop out."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from tests.conftest import REDIS_URL, need_service
from tests.support.polling import eventually
from tomchat.cluster.bus import ProcessIdentity
from tomchat.cluster.presence import Presence, SharedPresence

pytestmark = [pytest.mark.redis, pytest.mark.timeout(30)]


@pytest.fixture
async def redis_prefix() -> AsyncIterator[tuple[Redis, str]]:
    parts = urlsplit(REDIS_URL)
    need_service("Redis", parts.hostname or "127.0.0.1", parts.port or 6379)
    client = Redis.from_url(REDIS_URL)
    prefix = f"tomchat-test-{uuid.uuid4().hex[:10]}"
    yield client, prefix
    async for key in client.scan_iter(f"{prefix}:*"):
        await client.delete(key)
    await client.aclose()


def process(name: str) -> ProcessIdentity:
    me = ProcessIdentity.current()
    return replace(me, owner=f"{name}:{me.owner}")


async def nobody(_room: str) -> None:
    pass


async def test_local_presence_is_the_whole_truth_alone() -> None:
    presence = Presence()
    await presence.join("s1", "r", "ann")
    await presence.join("s2", "r", "ann")  # a second tab
    await presence.join("s3", "r", "bob")
    assert await presence.members("r") == ["ann", "bob"]
    assert await presence.counts(["r", "other"]) == {"r": 3}
    assert await presence.leave("s3", "r") and not await presence.leave("s3", "r")
    assert await presence.drop("s1") == ["r"]
    assert await presence.members("r") == ["ann"]


async def test_members_span_processes_and_a_dead_one_drops_out(
    redis_prefix: tuple[Redis, str],
) -> None:
    redis, prefix = redis_prefix
    a = SharedPresence(redis, prefix, process("a"), ttl=1.0)
    b = SharedPresence(redis, prefix, process("b"), ttl=1.0)
    told: list[str] = []

    async def announce(room: str) -> None:
        told.append(room)

    await a.start(nobody)
    await b.start(announce)
    await a.join("s1", "room", "ann")
    await b.join("s2", "room", "bob")
    await b.join("s3", "room", "bob")  # bob's second tab, on the same process
    assert await a.members("room") == await b.members("room") == ["ann", "bob"]
    assert await a.counts(["room", "empty"]) == {"room": 3}
    assert a.username("s1", "room") == "ann" and a.username("s2", "room") is None

    # A dies without a word: its heartbeat stops and nothing of it is cleaned up.
    assert a._task is not None
    a._task.cancel()
    await eventually(lambda: "room" in told, timeout=5, interval=0.05)
    assert await b.members("room") == ["bob"]
    assert await redis.hlen(f"{prefix}:presence:room") == 2, "the dead entries are gone"

    await b.leave("s3", "room")
    assert await b.counts(["room"]) == {"room": 1}
    await b.close()
    assert await redis.exists(f"{prefix}:presence:room") == 0, "a clean stop leaves nothing"

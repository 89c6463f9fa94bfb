"""Rate limits: moving windows per connection and per username for messages, voice messages and
joins, every packet counted per connection, and a bounded queue of messages waiting per room.
Over a limit the answer is ``rate_limited`` with the seconds to wait; nothing is appended."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from limits.aio.storage import MemoryStorage

from tests.conftest import REDIS_URL, ServerFactory, need_service
from tests.hardening.conftest import (
    GENEROUS,
    StartServer,
    call,
    connect,
    event_count,
)
from tests.support.polling import eventually
from tests.support.settings import make_settings
from tomchat.cluster.ratelimit import Limiter, RateLimited, RateLimitStores
from tomchat.domain.limits import Rate

pytestmark = pytest.mark.timeout(60)


async def test_window_allows_a_burst_then_frees_places_as_they_age() -> None:
    # 3 per second: a moving window of 3 places, each freed one second after it was taken.
    limiter = Limiter("messages", Rate(burst=3, per_second=3.0))
    for _ in range(3):
        await limiter.check(["sid", "ann"])
    with pytest.raises(RateLimited) as refused:
        await limiter.check(["sid", "ann"])
    assert 0.8 <= refused.value.retry_after <= 1.0
    assert f"{refused.value.retry_after:.1f} s" in str(refused.value)
    await limiter.check(["sid-2", "bob"])  # other keys have their own window
    await asyncio.sleep(refused.value.retry_after)
    for _ in range(3):  # exactly the time it was told to wait: the window is free again
        await limiter.check(["sid", "ann"])
    with pytest.raises(RateLimited):
        await limiter.check(["sid", "ann"])


async def test_several_keys_are_all_or_nothing() -> None:
    limiter = Limiter("messages", Rate(burst=2, per_second=0.1))
    await limiter.check(["sid-1", "ann"])
    await limiter.check(["sid-2", "ann"])
    with pytest.raises(RateLimited):
        await limiter.check(["sid-3", "ann"])  # ann is out, whichever connection she uses
    # The refusal took nothing from sid-3: it still has its whole burst for another name.
    await limiter.check(["sid-3", "bob"])
    await limiter.check(["sid-3", "cat"])
    with pytest.raises(RateLimited):
        await limiter.check(["sid-3", "dan"])  # and now the connection is out, whatever the name
    await limiter.forget("sid-3")  # a closed connection's window goes with it
    await limiter.check(["sid-3", "dan"])


async def test_idle_windows_are_forgotten() -> None:
    stores = RateLimitStores()
    limiter = Limiter("messages", Rate(burst=2, per_second=2.0), stores)
    for i in range(2000):
        await limiter.check([f"sid-{i}", f"throwaway-{i}"])
    local = stores.local
    assert isinstance(local, MemoryStorage)
    assert len(local.events) == 4000
    await asyncio.sleep(1.1)
    await limiter.check(["sid", "ann"])  # a request runs the expiry of aged entries

    async def forgotten() -> bool:
        return len(local.events) <= 2

    # Memory follows the names active in the last window, not every name ever seen.
    await eventually(forgotten)


async def test_servers_on_one_redis_share_a_username_limit(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    parts = urlsplit(REDIS_URL)
    need_service("Redis", parts.hostname or "127.0.0.1", parts.port or 6379)
    prefix = f"tomchat-test-{uuid.uuid4().hex[:10]}"
    shared = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}",
        "redis_url": REDIS_URL,
        "redis_prefix": prefix,
        "live_limits": replace(GENEROUS, messages=Rate(burst=3, per_second=0.1)),
        "demo_delay_ms": 5,
    }
    a = await server_factory(settings=make_settings(tmp_path, name="a", **shared))
    b = await server_factory(settings=make_settings(tmp_path, name="b", **shared))
    on_a, on_b = await connect(a), await connect(b)
    try:
        # One person on both processes: the same name with the same member key.
        first = await call(on_a, "joinRoom", {"roomId": "r", "username": "ann"})
        assert first["ok"]
        join = {"roomId": "r", "username": "ann", "memberKey": first["memberKey"]}
        assert (await call(on_b, "joinRoom", join))["ok"]
        sent = [await call(on_a, "sendMessage", {"roomId": "r", "content": "1"})]
        sent += [
            await call(on_b, "sendMessage", {"roomId": "r", "content": f"{i}"}) for i in (2, 3)
        ]
        assert [x["ok"] for x in sent] == [True, True, True]
        # Ann's window is full on both servers: the other process does not buy her more.
        for sio in (on_a, on_b):
            refused = await call(sio, "sendMessage", {"roomId": "r", "content": "4"})
            assert refused["error"]["code"] == "rate_limited", refused
            assert 25 < refused["error"]["retryAfter"] <= 30
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = [k.decode() for k in client.scan_iter(f"{prefix}:limits*")]
        finally:
            client.close()
        assert any("ann" in k for k in keys), keys  # the name's window is in Redis
        assert not any("connection" in k for k in keys), "a connection's window stays local"
    finally:
        await on_a.disconnect()
        await on_b.disconnect()
        client = redis.Redis.from_url(REDIS_URL)
        try:
            for key in client.scan_iter(f"{prefix}*"):
                client.delete(key)
        finally:
            client.close()


async def test_messages_are_limited_per_connection_and_per_username(start: StartServer) -> None:
    server = await start(live_limits=replace(GENEROUS, messages=Rate(burst=3, per_second=1.0)))
    one, two, three = await connect(server), await connect(server), await connect(server)
    for sio, name in ((one, "ann"), (two, "ann"), (three, "bob")):
        # Ann's two connections are one person: the same member key holds her name.
        join = {"roomId": "rl", "username": name, "memberKey": f"{name}-key-0123456789abcdef"}
        assert (await call(sio, "joinRoom", join))["ok"]
    sent = [await call(one, "sendMessage", {"roomId": "rl", "content": f"m{i}"}) for i in range(2)]
    sent.append(await call(two, "sendMessage", {"roomId": "rl", "content": "m2"}))
    assert all(a["ok"] for a in sent)
    before = await event_count(server)
    for sio in (one, two):  # a new socket buys ann nothing
        refused = await call(sio, "sendMessage", {"roomId": "rl", "content": "more"})
        assert refused["ok"] is False and refused["error"]["code"] == "rate_limited"
        assert 0 < refused["error"]["retryAfter"] <= 3.0  # 3 per 3 s: the oldest ages out
        assert "try again in" in refused["error"]["message"]
    assert (await call(three, "sendMessage", {"roomId": "rl", "content": "bob"}))["ok"]
    posted = [
        e for e in await server.services.store.read_stream("rl") if e.type == "message.posted"
    ]
    assert [getattr(e.event, "content", None) for e in posted] == ["m0", "m1", "m2", "bob"]
    assert await event_count(server) >= before  # the replies go on; no refused message is in
    await asyncio.sleep(refused["error"]["retryAfter"])
    assert (await call(two, "sendMessage", {"roomId": "rl", "content": "later"}))["ok"]
    for sio in (one, two, three):
        await sio.disconnect()


async def test_one_connection_cannot_switch_names_to_send_more(start: StartServer) -> None:
    server = await start(live_limits=replace(GENEROUS, messages=Rate(burst=2, per_second=0.5)))
    sio = await connect(server)
    for room, name in (("a1", "ann"), ("a2", "bob"), ("a3", "cat")):
        assert (await call(sio, "joinRoom", {"roomId": room, "username": name}))["ok"]
    assert (await call(sio, "sendMessage", {"roomId": "a1", "content": "x"}))["ok"]
    assert (await call(sio, "sendMessage", {"roomId": "a2", "content": "x"}))["ok"]
    refused = await call(sio, "sendMessage", {"roomId": "a3", "content": "x"})
    assert refused["error"]["code"] == "rate_limited"
    await sio.disconnect()


async def test_joins_and_resyncs_are_limited(start: StartServer) -> None:
    server = await start(live_limits=replace(GENEROUS, joins=Rate(burst=3, per_second=0.5)))
    sio = await connect(server)
    assert (await call(sio, "joinRoom", {"roomId": "j", "username": "ann"}))["ok"]
    assert (await call(sio, "resync", {"roomId": "j", "since": 0}))["ok"]
    assert (await call(sio, "joinRoom", {"roomId": "j", "username": "ann"}))["ok"]
    before = await event_count(server)
    for event, payload in [
        ("joinRoom", {"roomId": "new-room", "username": "ann"}),
        ("resync", {"roomId": "j", "since": 0}),
    ]:
        refused = await call(sio, event, payload)
        assert refused["error"]["code"] == "rate_limited", refused
        assert 5.0 <= refused["error"]["retryAfter"] <= 6.0  # 3 per 6 s
    assert await event_count(server) == before, "the refused join created no room"
    other = await connect(server)
    refused = await call(other, "joinRoom", {"roomId": "j", "username": "ann"})
    assert refused["error"]["code"] == "rate_limited", "per username, on any connection"
    assert (await call(other, "joinRoom", {"roomId": "j", "username": "bob"}))["ok"]
    await sio.disconnect()
    await other.disconnect()


async def test_every_packet_counts_so_junk_floods_are_cut_short(start: StartServer) -> None:
    server = await start(live_limits=replace(GENEROUS, events=Rate(burst=10, per_second=5.0)))
    sio = await connect(server)
    # Packets are counted raw, before decoding: the connection's CONNECT packet took one.
    answers = [await call(sio, "noSuchEvent", {"x": i}) for i in range(9)]
    answers += [await call(sio, "joinRoom", "junk") for _ in range(2)]
    codes = [a["error"]["code"] for a in answers]
    assert codes == ["bad_request"] * 9 + ["rate_limited"] * 2
    assert answers[-1]["error"]["retryAfter"] > 0
    # A moving window: once its oldest packet has left it, the connection is heard again.
    await asyncio.sleep(answers[-1]["error"]["retryAfter"] + 0.1)
    assert (await call(sio, "joinRoom", {"roomId": "f", "username": "ann"}))["ok"]
    await sio.disconnect()


async def test_voice_messages_are_limited_before_the_audio_is_touched(
    start: StartServer,
) -> None:
    server = await start(live_limits=replace(GENEROUS, voice=Rate(burst=2, per_second=0.1)))
    sio = await connect(server)
    assert (await call(sio, "joinRoom", {"roomId": "v", "username": "ann"}))["ok"]
    voice = {"roomId": "v", "audio": b"OggS" + bytes(100), "mimeType": "audio/ogg"}
    # This server has no transcriber (TOMCHAT_ASR=none): past the limiter the answer is
    # `unavailable`; the third is refused by the limiter before that.
    codes = [(await call(sio, "sendVoiceMessage", voice))["error"]["code"] for _ in range(3)]
    assert codes == ["unavailable", "unavailable", "rate_limited"]
    await sio.disconnect()


async def test_a_room_holds_a_bounded_queue_of_waiting_messages(start: StartServer) -> None:
    # A slow character: the first reply streams for seconds, the queue fills behind it.
    server = await start(live_limits=replace(GENEROUS, waiting_messages=4), demo_delay_ms=400)
    sio = await connect(server)
    assert (await call(sio, "joinRoom", {"roomId": "q", "username": "ann"}))["ok"]
    answers = [await call(sio, "sendMessage", {"roomId": "q", "content": "question 0"})]

    async def answering() -> bool:
        return not await server.services.reader.unanswered("q")

    await eventually(answering)  # the reply to question 0 has started: it waits no more
    answers += [
        await call(sio, "sendMessage", {"roomId": "q", "content": f"question {i}"})
        for i in range(1, 8)
    ]
    codes = [a["ok"] or a["error"]["code"] for a in answers]
    # The first is being answered (not waiting); four more wait; the rest are refused.
    assert codes[:5] == [True] * 5 and codes[5:] == ["rate_limited"] * 3, codes
    assert answers[5]["error"]["retryAfter"] > 0
    assert len(await server.services.reader.unanswered("q")) == 4
    await sio.disconnect()

"""Rate limits: token buckets per connection and per username for messages, voice messages and
joins, every packet counted per connection, and a bounded queue of messages waiting per room.
Over a limit the answer is ``rate_limited`` with the seconds to wait; nothing is appended."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from tests.hardening.conftest import (
    GENEROUS,
    StartServer,
    call,
    connect,
    event_count,
)
from tests.support.polling import eventually
from tomchat.domain.limits import Rate
from tomchat.live.ratelimit import Limiter, RateLimited, TokenBuckets

pytestmark = pytest.mark.timeout(60)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    limiter = Limiter("messages", Rate(burst=3, per_second=2.0), clock)
    for _ in range(3):
        limiter.check(["ann"])
    with pytest.raises(RateLimited) as refused:
        limiter.check(["ann"])
    assert refused.value.retry_after == 0.5 and "0.5 s" in str(refused.value)
    clock.now += 0.49
    with pytest.raises(RateLimited):
        limiter.check(["ann"])
    clock.now += 0.01
    limiter.check(["ann"])  # exactly the time it was told to wait
    limiter.check(["bob"])  # other keys have their own bucket
    clock.now += 60
    for _ in range(3):  # refilled, but never past the burst
        limiter.check(["ann"])
    with pytest.raises(RateLimited):
        limiter.check(["ann"])


def test_several_keys_are_all_or_nothing() -> None:
    clock = Clock()
    limiter = Limiter("messages", Rate(burst=2, per_second=1.0), clock)
    limiter.check(["sid-1", "ann"])
    limiter.check(["sid-2", "ann"])
    with pytest.raises(RateLimited):
        limiter.check(["sid-3", "ann"])  # ann is out, whichever connection she uses
    # The refusal took nothing from sid-3: it still has its whole burst for another name.
    limiter.check(["sid-3", "bob"])
    limiter.check(["sid-3", "cat"])
    with pytest.raises(RateLimited):
        limiter.check(["sid-3", "dan"])  # and now the connection is out, whatever the name


def test_idle_buckets_are_forgotten() -> None:
    clock = Clock()
    buckets = TokenBuckets(Rate(burst=2, per_second=1.0), clock)
    for i in range(5000):
        buckets.take(f"throwaway-{i}", clock.now)
        clock.now += 0.01
    # Full buckets (idle for 2 s) are dropped whenever the table has grown: memory follows the
    # names active in the last few seconds, not every name ever seen.
    assert len(buckets) < 1500


async def test_messages_are_limited_per_connection_and_per_username(start: StartServer) -> None:
    server = await start(live_limits=replace(GENEROUS, messages=Rate(burst=3, per_second=1.0)))
    one, two, three = await connect(server), await connect(server), await connect(server)
    for sio, name in ((one, "ann"), (two, "ann"), (three, "bob")):
        assert (await call(sio, "joinRoom", {"roomId": "rl", "username": name}))["ok"]
    sent = [await call(one, "sendMessage", {"roomId": "rl", "content": f"m{i}"}) for i in range(2)]
    sent.append(await call(two, "sendMessage", {"roomId": "rl", "content": "m2"}))
    assert all(a["ok"] for a in sent)
    before = await event_count(server)
    for sio in (one, two):  # a new socket buys ann nothing
        refused = await call(sio, "sendMessage", {"roomId": "rl", "content": "more"})
        assert refused["ok"] is False and refused["error"]["code"] == "rate_limited"
        assert 0 < refused["error"]["retryAfter"] <= 1.0
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
        assert 1.9 <= refused["error"]["retryAfter"] <= 2.0
    assert await event_count(server) == before, "the refused join created no room"
    other = await connect(server)
    refused = await call(other, "joinRoom", {"roomId": "j", "username": "ann"})
    assert refused["error"]["code"] == "rate_limited", "per username, on any connection"
    assert (await call(other, "joinRoom", {"roomId": "j", "username": "bob"}))["ok"]
    await sio.disconnect()
    await other.disconnect()


async def test_every_packet_counts_so_junk_floods_are_cut_short(start: StartServer) -> None:
    server = await start(live_limits=replace(GENEROUS, events=Rate(burst=10, per_second=1.0)))
    sio = await connect(server)
    # Packets are counted raw, before decoding: the connection's CONNECT packet took one.
    answers = [await call(sio, "noSuchEvent", {"x": i}) for i in range(9)]
    answers += [await call(sio, "joinRoom", "junk") for _ in range(2)]
    codes = [a["error"]["code"] for a in answers]
    assert codes == ["bad_request"] * 9 + ["rate_limited"] * 2
    assert answers[-1]["error"]["retryAfter"] > 0
    await asyncio.sleep(1.0)
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

"""Property-based fuzzing of the Socket.IO edge over a real connection.

Hypothesis throws random and malformed payloads at every event (and at names that are no
event), mixed with valid requests. Every answer must be a well-formed ack with a protocol
code, never ``internal``; afterwards a new client joins normally, and the log holds exactly
what the accepted requests produced: the rooms their joins created, their messages, and the
character's replies to those messages, versions contiguous.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import socketio
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RunningServer, start_server
from tests.fakes.background import BackgroundLoop
from tests.hardening.conftest import GENEROUS, log_of
from tests.support.polling import eventually
from tests.support.settings import make_settings

pytestmark = pytest.mark.timeout(300)

EVENTS = [
    "joinRoom",
    "sendMessage",
    "sendVoiceMessage",
    "stopGeneration",
    "resync",
    "leaveRoom",
    "typing",
]
CODES = {"bad_request", "not_found", "too_large", "rate_limited", "forbidden", "unavailable"}
ROOMS = ["fz-a", "fz-b", "fz-c"]
NAMES = ["ann", "bob", "Zoë ✨"]

# -- strategies ------------------------------------------------------------------------------

weird_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"])
    | st.sampled_from(["\x00", "\n", "\u202e", "\ufeff", "\U0001d518", "\x07", "'", '"', "\\"]),
    max_size=40,
) | st.sampled_from(["%2F", "../", "..\\", "/etc/passwd", "$where", "<script>", "\r\n"])
big_text = st.integers(1, 60_000).map(lambda n: "x" * n)
numbers = st.integers(-(2**80), 2**80) | st.floats(allow_nan=True, allow_infinity=True)
scalars = st.none() | st.booleans() | numbers | weird_text | st.binary(max_size=64)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(weird_text, inner, max_size=4),
    max_leaves=12,
)


def field_value(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a valid value, often junk: near misses find more than pure noise."""
    return st.one_of(valid, valid, junk, big_text)


room_ids = st.sampled_from(ROOMS) | st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")
payload_fields: dict[str, st.SearchStrategy[Any]] = {
    "roomId": field_value(st.sampled_from(ROOMS) | room_ids),
    "username": field_value(st.sampled_from(NAMES)),
    "content": field_value(st.text(min_size=1, max_size=60) | st.sampled_from(["hi Tom"])),
    "since": field_value(st.integers(-5, 40)),
    "token": field_value(st.text(max_size=50)),
    "clientId": field_value(st.sampled_from(["c1", "c2", "c3"])),
    "messageId": field_value(st.text(min_size=1, max_size=40)),
    "audio": field_value(st.binary(max_size=200) | st.just("T2dnUw==")),
    "mimeType": field_value(st.sampled_from(["audio/ogg", "audio/webm"])),
}
payloads = st.fixed_dictionaries(
    {},
    optional=payload_fields | {"junkKey": junk},  # type: ignore[operator]
)
arguments = st.one_of(
    payloads.map(lambda p: (p,)),
    payloads.map(lambda p: (p,)),
    junk.map(lambda j: (j,)),
    st.just(()),
    st.tuples(payloads, junk),
)
event_names = (
    st.sampled_from(EVENTS)
    | st.sampled_from(
        ["message", "aiStart", "connect", "disconnect", "noSuchEvent", "", "joinroom"]
    )
    | weird_text
)
valid_requests = st.one_of(
    st.builds(
        lambda r, u: ("joinRoom", ({"roomId": r, "username": u},)),
        st.sampled_from(ROOMS),
        st.sampled_from(NAMES),
    ),
    st.builds(
        lambda r, c, k: ("sendMessage", ({"roomId": r, "content": c} | k,)),
        st.sampled_from(ROOMS),
        st.text(min_size=1, max_size=40).filter(str.strip),
        st.sampled_from([{}, {"clientId": "c1"}, {"clientId": "c2"}]),
    ),
    st.builds(lambda r: ("leaveRoom", ({"roomId": r},)), st.sampled_from(ROOMS)),
    st.builds(lambda r: ("typing", ({"roomId": r},)), st.sampled_from(ROOMS)),
    st.builds(
        lambda r, v: ("resync", ({"roomId": r, "since": v},)),
        st.sampled_from(ROOMS),
        st.integers(0, 30),
    ),
)
fuzzed_requests = st.tuples(
    st.one_of(st.sampled_from(EVENTS), st.sampled_from(EVENTS), event_names), arguments
)
requests = st.one_of(valid_requests, fuzzed_requests, fuzzed_requests)


# -- the harness -----------------------------------------------------------------------------


@dataclass
class Accepted:
    rooms: set[str] = field(default_factory=set)  # rooms an accepted join created or entered
    member: dict[str, str] = field(default_factory=dict)  # room -> username, as joined
    messages: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # id -> room, ...
    answers: int = 0


@pytest.fixture
def background(tmp_path: Path) -> Iterator[tuple[BackgroundLoop, RunningServer]]:
    loop = BackgroundLoop("fuzzed-server")
    settings = make_settings(tmp_path, demo_delay_ms=0, live_limits=GENEROUS)
    server, stop = loop.run(start_server(settings), timeout=30)
    try:
        yield loop, server
    finally:
        loop.run(stop(), timeout=30)
        loop.close()


def check_ack(ack: Any) -> None:
    assert isinstance(ack, dict) and isinstance(ack.get("ok"), bool), ack
    if not ack["ok"]:
        error = ack["error"]
        assert error["code"] in CODES, ack  # never "internal": nothing crashed
        assert isinstance(error["message"], str) and 0 < len(error["message"]) < 500


def record(
    accepted: Accepted, sid_rooms: Accepted, event: str, args: tuple[Any, ...], ack: Any
) -> None:
    if not ack["ok"]:
        return
    payload = args[0]
    if event == "joinRoom":
        accepted.rooms.add(payload["roomId"])
        sid_rooms.member[payload["roomId"]] = payload["username"].strip()
    elif event == "leaveRoom":
        sid_rooms.member.pop(payload["roomId"], None)
    elif event == "sendMessage":
        room = payload["roomId"]
        first = accepted.messages.setdefault(
            ack["messageId"], (room, payload["content"], ack["version"])
        )
        # A clientId sent again returns the first answer; the first content stands.
        assert (first[0], first[2]) == (room, ack["version"]), "a retry differs"
    else:
        # typing is ephemeral: accepted, it leaves nothing to account for.
        assert event in ("resync", "stopGeneration", "typing"), (event, ack)


def test_fuzzed_payloads_leave_the_log_exactly_as_the_valid_requests_made_it(
    background: tuple[BackgroundLoop, RunningServer],
) -> None:
    loop, server = background
    sio = socketio.AsyncClient(reconnection=False)
    loop.run(sio.connect(server.url, transports=["websocket"], wait_timeout=10))
    accepted, state = Accepted(), Accepted()

    async def send(event: str, args: tuple[Any, ...]) -> Any:
        data: Any = args[0] if len(args) == 1 else tuple(args) if args else None
        return await sio.call(event, data, timeout=10)

    @settings(
        max_examples=int(__import__("os").environ.get("TOMCHAT_FUZZ_EXAMPLES", "80")),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(batch=st.lists(requests, min_size=1, max_size=6))
    def throw(batch: list[tuple[str, tuple[Any, ...]]]) -> None:
        for event, args in batch:
            try:
                ack = loop.run(send(event, args))
            except Exception as exc:
                raise AssertionError(f"no answer to {event!r} {str(args)[:300]}: {exc!r}") from exc
            check_ack(ack)
            record(accepted, state, event, args, ack)
            accepted.answers += 1

    throw()
    assert sio.connected, "the fuzzed connection is still up"
    assert accepted.answers > 100
    assert accepted.rooms and accepted.messages, "valid requests were among the junk"

    async def afterwards() -> None:
        # A normal client joins and talks, on a fresh connection.
        fresh = socketio.AsyncClient(reconnection=False)
        await fresh.connect(server.url, transports=["websocket"], wait_timeout=10)
        joined = await fresh.call("joinRoom", {"roomId": "fz-after", "username": "eve"}, timeout=10)
        assert joined["ok"] and joined["version"] == 3
        sent = await fresh.call(
            "sendMessage", {"roomId": "fz-after", "content": "hello"}, timeout=10
        )
        assert sent["ok"]
        accepted.rooms.add("fz-after")
        accepted.messages[sent["messageId"]] = ("fz-after", "hello", sent["version"])

        # Replies to the last messages finish before the log is read.
        async def settled() -> bool:
            reader = server.services.reader
            unanswered = [await reader.unanswered(r) for r in accepted.rooms]
            return not await reader.streaming_replies() and not any(unanswered)

        await eventually(settled, timeout=60, interval=0.05)
        await fresh.disconnect()
        await sio.disconnect()

    loop.run(afterwards(), timeout=90)
    log = loop.run(log_of(server))

    rooms: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
    for room, version, kind, data in log:
        rooms.setdefault(room, []).append((version, kind, data))
    assert set(rooms) == accepted.rooms, "only accepted joins created rooms"
    posted: dict[str, tuple[str, str, int]] = {}
    for room, entries in rooms.items():
        assert [v for v, _, _ in entries] == list(range(1, len(entries) + 1)), room
        assert [k for _, k, _ in entries[:3]] == [
            "room.created",
            "reply.started",
            "reply.completed",
        ]
        replies = {entries[1][2]["message_id"]}
        for version, kind, data in entries[3:]:
            if kind == "message.posted":
                posted[data["message_id"]] = (room, data["content"], version)
            elif kind == "reply.started":
                assert set(data["in_reply_to"]) <= set(posted), "replies answer logged messages"
                replies.add(data["message_id"])
            else:
                assert kind in ("reply.chunk", "reply.completed"), kind
                assert data["message_id"] in replies
    assert posted == accepted.messages, "the messages are exactly the accepted ones"


async def test_malformed_packets_on_a_raw_connection(server: RunningServer) -> None:
    """Below the payloads: frames that are not valid Socket.IO at all, or valid packets no
    client library would send. The connection keeps answering, and so does the server."""
    url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(url, max_size=None) as ws:
        opened = await ws.recv()
        assert isinstance(opened, str) and opened.startswith("0")
        await ws.send("40")
        assert str(await ws.recv()).startswith("40")
        junk_frames: list[str | bytes] = [
            "",
            "4",
            "42",
            "42[",
            "42[]",
            "42{}",
            '42"joinRoom"',
            "42[5]",
            "42[null]",
            '42[{"a":1}]',
            "42[" * 5000,
            '42["joinRoom",' + "[" * 3000 + "]" * 3000 + "]",
            '4299999999999999999999999["joinRoom",{}]',
            '42/nowhere,["joinRoom",{}]',
            "40/nowhere,",
            "43",
            '437["stray ack"]',
            "4" + "9" * 10,
            "9",
            "x" * 10_000,
            b"\x00\x01\x02 a binary frame out of nowhere",
            '4512345678901-["sendMessage",{}]',
            "3probe",
            "6",
        ]
        for frame in junk_frames:
            await ws.send(frame)
        acks: dict[int, Any] = {}

        async def answer(number: int) -> Any:
            """Read frames until the ack ``number`` has come (handlers run concurrently)."""
            async with asyncio.timeout(15):
                while number not in acks:
                    frame = await ws.recv()
                    if isinstance(frame, str) and frame.startswith("2"):
                        await ws.send("3")  # answer the server's ping
                    elif isinstance(frame, str) and frame.startswith("43"):
                        digits = frame[2:].split("[", 1)[0]
                        acks[int(digits)] = json.loads(frame[2 + len(digits) :])[0]
            return acks[number]

        # A packet with one binary attachment, completed: it reaches the handler, which
        # refuses bytes where text belongs.
        await ws.send(
            '451-1["sendMessage",{"roomId":"raw","content":{"_placeholder":true,"num":0}}]'
        )
        await ws.send(b"\xff\xfe")
        assert (await answer(1))["error"]["code"] == "bad_request"
        await ws.send('42100["joinRoom",{"roomId":"raw","username":"ann"}]')
        joined = await answer(100)
        assert joined["ok"] is True and joined["version"] == 3
        await ws.send('42101["connect",{}]')
        await ws.send('42102["disconnect","transport close"]')
        assert (await answer(101))["error"]["code"] == "bad_request"
        assert (await answer(102))["error"]["code"] == "bad_request"
        # Six attachments announced: they are let through uncounted, then refused.
        placeholders = ",".join(json.dumps({"_placeholder": True, "num": i}) for i in range(6))
        await ws.send('456-104["sendMessage",[' + placeholders + "]]")
        for _ in range(6):
            await ws.send(b"\x00" * 1000)
        assert (await answer(104))["error"]["code"] == "too_large"
        await ws.send('42105["sendMessage",{"roomId":"raw","content":"still here"}]')
        assert (await answer(105))["ok"] is True, "still a member: the fake disconnect did nothing"
    # And the server serves everyone else.
    other = socketio.AsyncClient(reconnection=False)
    await other.connect(server.url, transports=["websocket"], wait_timeout=10)
    ack = await other.call("joinRoom", {"roomId": "raw", "username": "bob"}, timeout=10)
    assert ack["ok"] and not math.isnan(ack["version"])
    await other.disconnect()

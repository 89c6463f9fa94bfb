"""Bad input over Socket.IO and REST: every kind of junk gets a clean refusal with a code,
nothing is appended, and both the connection and the server keep working."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import socketio

from tests.conftest import RunningServer
from tests.hardening.conftest import GENEROUS, StartServer, call, connect, event_count
from tomchat.domain import limits

pytestmark = pytest.mark.timeout(90)

BIG = "x" * 1_000_000
NESTED: Any = "deep"
for _ in range(200):
    NESTED = {"a": [NESTED]}

ROOM = "bad"
# (event, arguments as sent, expected code). One argument is the usual payload; a tuple is
# several arguments; () is none at all.
CASES: list[tuple[str, tuple[Any, ...], str]] = [
    # wrong shapes and types
    ("joinRoom", (), "bad_request"),
    ("joinRoom", (None,), "bad_request"),
    ("joinRoom", ("lobby",), "bad_request"),
    ("joinRoom", (42,), "bad_request"),
    ("joinRoom", ([ROOM, "ann"],), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": "ann"}, "extra"), "bad_request"),
    ("joinRoom", ({"roomId": ROOM},), "bad_request"),
    ("joinRoom", ({"username": "ann"},), "bad_request"),
    ("joinRoom", ({"roomId": 7, "username": "ann"},), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": 7},), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": None},), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": "ann", "since": "3"},), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": "ann", "since": 1.5},), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": "ann", "since": True},), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": "ann", "since": 2**64},), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": "ann", "since": -(2**70)},), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": "ann", "token": 123},), "bad_request"),
    # values out of bounds
    ("joinRoom", ({"roomId": "", "username": "ann"},), "bad_request"),
    ("joinRoom", ({"roomId": "a b", "username": "ann"},), "bad_request"),
    ("joinRoom", ({"roomId": "../etc", "username": "ann"},), "bad_request"),
    ("joinRoom", ({"roomId": "x" * 65, "username": "ann"},), "bad_request"),
    ("joinRoom", ({"roomId": "ok\n", "username": "ann"},), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": ""},), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": "   "},), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": "a" * 33},), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": "bell\x07"},), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": "nul\x00"},), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": "\ud800"},), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": "ann", "token": "t" * 257},), "bad_request"),
    # huge strings, nested junk, binary where text is expected
    ("joinRoom", ({"roomId": BIG, "username": "ann"},), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": BIG},), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": "ann", "token": BIG},), "bad_request"),
    ("joinRoom", ({"roomId": NESTED, "username": NESTED},), "bad_request"),
    ("joinRoom", (NESTED,), "bad_request"),
    ("joinRoom", ({"roomId": b"bad", "username": "ann"},), "bad_request"),
    ("joinRoom", ({"roomId": ROOM, "username": b"ann"},), "bad_request"),
    ("joinRoom", (b"\x00\x01binary",), "bad_request"),
    (
        "sendMessage",
        ({"roomId": ROOM, "content": "x" * (limits.MAX_CONTENT_CHARS + 1)},),
        "too_large",
    ),
    ("sendMessage", ({"roomId": ROOM, "content": BIG},), "too_large"),
    ("sendMessage", ({"roomId": ROOM, "content": ""},), "bad_request"),
    ("sendMessage", ({"roomId": ROOM, "content": " \n\t "},), "bad_request"),
    ("sendMessage", ({"roomId": ROOM, "content": "nul\x00byte"},), "bad_request"),
    ("sendMessage", ({"roomId": ROOM, "content": "half \udc00 a pair"},), "bad_request"),
    ("sendMessage", ({"roomId": ROOM, "content": {"$gt": ""}},), "bad_request"),
    ("sendMessage", ({"roomId": ROOM, "content": ["a", "b"]},), "bad_request"),
    ("sendMessage", ({"roomId": ROOM, "content": NESTED},), "bad_request"),
    ("sendMessage", ({"roomId": ROOM, "content": b"bytes"},), "bad_request"),
    ("sendMessage", ({"roomId": ROOM, "content": 12},), "bad_request"),
    ("sendMessage", ({"roomId": ROOM},), "bad_request"),
    ("sendMessage", ({"content": "hi"},), "bad_request"),
    ("sendMessage", ({"roomId": ROOM, "content": "hi", "clientId": "c" * 129},), "bad_request"),
    ("sendMessage", ({"roomId": ROOM, "content": "hi", "clientId": 5},), "bad_request"),
    ("sendMessage", ({"roomId": ROOM, "content": "hi", "clientId": "\x00"},), "bad_request"),
    ("sendMessage", ({"roomId": "elsewhere", "content": "hi"},), "forbidden"),
    ("sendMessage", ({"roomId": ROOM, "content": "hi"}, {"roomId": ROOM}), "bad_request"),
    ("sendVoiceMessage", ({"roomId": ROOM},), "bad_request"),
    ("sendVoiceMessage", ({"roomId": ROOM, "audio": "x", "mimeType": 5},), "bad_request"),
    ("sendVoiceMessage", ({"roomId": ROOM, "audio": "x", "mimeType": "a" * 200},), "bad_request"),
    ("sendVoiceMessage", ({"roomId": "elsewhere", "audio": b"OggS"},), "forbidden"),
    ("stopGeneration", ({"roomId": ROOM},), "bad_request"),
    ("stopGeneration", ({"roomId": ROOM, "messageId": ""},), "bad_request"),
    ("stopGeneration", ({"roomId": ROOM, "messageId": BIG},), "bad_request"),
    ("stopGeneration", ({"roomId": ROOM, "messageId": {"id": 1}},), "bad_request"),
    ("stopGeneration", ({"roomId": ROOM, "messageId": "nope"},), "not_found"),
    ("resync", ({"roomId": ROOM},), "bad_request"),
    ("resync", ({"roomId": ROOM, "since": -1},), "bad_request"),
    ("resync", ({"roomId": ROOM, "since": "0"},), "bad_request"),
    ("resync", ({"roomId": ROOM, "since": 2**63},), "bad_request"),
    ("resync", ({"roomId": "elsewhere", "since": 0},), "forbidden"),
    ("leaveRoom", ([],), "bad_request"),
    ("leaveRoom", ({"roomId": BIG},), "bad_request"),
    ("leaveRoom", ({},), "bad_request"),
    ("typing", ({},), "bad_request"),
    ("typing", ({"roomId": BIG},), "bad_request"),
    ("typing", (["t"],), "bad_request"),
    ("typing", ({"roomId": "elsewhere"},), "forbidden"),
    ("typing", ({"roomId": ROOM}, {"roomId": ROOM}), "bad_request"),
    # unknown events
    ("noSuchEvent", ({"x": 1},), "bad_request"),
    ("", ({},), "bad_request"),
    ("x" * 10_000, ({},), "bad_request"),
    ("message", ({"roomId": ROOM, "content": "server-to-client only"},), "bad_request"),
    ("connect", ({},), "bad_request"),
    ("disconnect", ({},), "bad_request"),
]


async def test_every_bad_payload_is_refused_with_a_code(start: StartServer) -> None:
    server = await start(live_limits=GENEROUS)
    sio = await connect(server)
    assert (await call(sio, "joinRoom", {"roomId": ROOM, "username": "ann"}))["ok"]
    before = await event_count(server)
    for event, args, code in CASES:
        ack = await call(sio, event, *args)
        shown = (event[:20], str(args)[:80])
        assert isinstance(ack, dict) and ack["ok"] is False, (shown, ack)
        assert ack["error"]["code"] == code, (shown, ack)
        assert isinstance(ack["error"]["message"], str) and ack["error"]["message"], shown
        assert len(ack["error"]["message"]) < 500, "an error never echoes the junk back"
    assert await event_count(server) == before, "nothing invalid was appended"
    # The same connection still works, and so does the server.
    sent = await call(sio, "sendMessage", {"roomId": ROOM, "content": "still here?"})
    assert sent["ok"] and sent["version"] == before + 1
    fresh = await connect(server)
    assert (await call(fresh, "joinRoom", {"roomId": ROOM, "username": "bob"}))["ok"]
    await sio.disconnect()
    await fresh.disconnect()


async def test_a_packet_over_the_size_limit_closes_only_that_connection(
    server: RunningServer,
) -> None:
    bystander = await connect(server)
    assert (await call(bystander, "joinRoom", {"roomId": "big", "username": "bob"}))["ok"]
    before = await event_count(server)
    sender = socketio.AsyncClient(reconnection=False)
    closed = asyncio.Event()
    sender.on("disconnect", lambda *_: closed.set())
    await sender.connect(server.url, transports=["websocket"], wait_timeout=10)
    assert (await call(sender, "joinRoom", {"roomId": "big", "username": "ann"}))["ok"]
    huge = "x" * (limits.MAX_PACKET_BYTES + 1024)
    with pytest.raises((socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError)):
        await sender.call("sendMessage", {"roomId": "big", "content": huge}, timeout=5)
    await asyncio.wait_for(closed.wait(), 10)
    assert await event_count(server) == before
    assert (await call(bystander, "sendMessage", {"roomId": "big", "content": "fine"}))["ok"]
    await bystander.disconnect()


async def test_binary_attachments_where_text_is_expected(server: RunningServer) -> None:
    sio = await connect(server)
    assert (await call(sio, "joinRoom", {"roomId": "bin", "username": "ann"}))["ok"]
    before = await event_count(server)
    for payload in [
        {"roomId": "bin", "content": b"\xff\xfe"},
        {"roomId": b"bin", "content": "x"},
        {"roomId": "bin", "content": [b"a", b"b"]},
        {"roomId": "bin", "content": "ok", "clientId": b"\x00" * 64},
    ]:
        ack = await call(sio, "sendMessage", payload)
        assert ack["error"]["code"] == "bad_request", (payload, ack)
    assert await event_count(server) == before
    await sio.disconnect()


REST_BAD: list[tuple[str, str, Any, dict[str, str], int]] = [
    ("GET", "/api/rooms/bad%20id", None, {}, 400),
    ("GET", f"/api/rooms/{'x' * 65}", None, {}, 400),
    ("GET", "/api/rooms/ok/messages?before=abc", None, {}, 400),
    ("GET", "/api/rooms/ok/messages?before=0", None, {}, 400),
    ("GET", "/api/rooms/ok/messages?limit=0", None, {}, 400),
    ("GET", "/api/rooms/ok/messages?limit=201", None, {}, 400),
    ("GET", f"/api/rooms/ok/messages?limit={10**30}", None, {}, 400),
    ("GET", f"/api/rooms/ok/messages?before={2**63}", None, {}, 400),
    ("GET", "/api/rooms/ok/events?after=-1", None, {}, 400),
    ("GET", "/api/rooms/ok/events?limit=10001", None, {}, 400),
    ("GET", "/api/rooms/ok/transcript?format=pdf", None, {}, 400),
    ("GET", "/api/rooms/ok/transcript?from=yesterday", None, {}, 400),
    ("GET", "/api/rooms/ok/replay?speed=0", None, {}, 400),
    ("GET", "/api/rooms/ok/replay?speed=nan", None, {}, 400),
    ("GET", "/api/rooms/ok/replay?maxPause=-1", None, {}, 400),
    ("GET", "/api/rooms/ok", None, {"X-Room-Token": "t" * 300}, 400),
    ("GET", f"/api/rooms/ok?token={'t' * 300}", None, {}, 400),
    ("POST", "/api/rooms", {"name": ""}, {}, 400),
    ("POST", "/api/rooms", {"name": "x" * 101}, {}, 400),
    ("POST", "/api/rooms", {"name": "nul\x00"}, {}, 400),
    ("POST", "/api/rooms", {"name": "x", "id": "has space"}, {}, 400),
    ("POST", "/api/rooms", {"name": "x", "id": "x" * 65}, {}, 400),
    ("POST", "/api/rooms", {"name": "x", "private": "yes"}, {}, 400),
    ("POST", "/api/rooms", {"name": "x", "extra": 1}, {}, 400),
    ("POST", "/api/rooms", {"name": ["x"]}, {}, 400),
    ("POST", "/api/rooms", {"name": {"a": 1}}, {}, 400),
    ("POST", "/api/rooms", [1, 2, 3], {}, 400),
    ("POST", "/api/rooms", "not json", {}, 400),
    ("POST", "/api/rooms", b"\xff\xfe\x00", {"Content-Type": "application/json"}, 400),
    ("POST", "/api/rooms", {"name": BIG}, {}, 400),
]


async def test_bad_rest_parameters_are_rfc9457_problems(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        await http.post("/api/rooms", json={"name": "ok", "id": "ok"})
        before = await event_count(server)
        for method, path, body, headers, status in REST_BAD:
            kwargs: dict[str, Any] = {"headers": headers}
            if isinstance(body, bytes):
                kwargs["content"] = body
            elif isinstance(body, str):
                kwargs["content"] = body.encode()
                kwargs["headers"] = headers | {"Content-Type": "application/json"}
            elif body is not None:
                kwargs["json"] = body
            response = await http.request(method, path, **kwargs)
            shown = (method, path[:60], str(body)[:40])
            assert response.status_code == status, (shown, response.status_code, response.text)
            assert response.headers["content-type"] == "application/problem+json", shown
            problem = response.json()
            assert problem["status"] == status and problem["title"] and problem["detail"], shown
        assert await event_count(server) == before
        assert (await http.get("/api/health")).json()["status"] == "ok"

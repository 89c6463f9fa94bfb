"""The library hooks (``tomchat.live.engine_hooks``) against the installed python-socketio
and python-engineio: every upstream name and signature they rely on, and the interface run on
real servers, sockets and websockets (no transport: packets are read off the socket's queue).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
from collections.abc import Callable
from typing import Any

import engineio
import engineio.async_drivers.asgi
import engineio.packet
import pytest
import socketio
from engineio.async_socket import AsyncSocket

from tomchat.live import engine_hooks
from tomchat.live.engine_hooks import (
    UPSTREAM,
    HookedEngineIO,
    HookedSocketIO,
    encode_event,
    fans_out_directly,
    frame_size,
    local_members,
)
from tomchat.live.sendbuffer import BoundedAsyncServer, BoundedEngineIO, SendBuffer


def _resolve(dotted: str) -> Any:
    """``package.module.Class.attr`` to the object, trying the longest importable module."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        return target
    raise ImportError(dotted)


def _parameters(function: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(p for p in inspect.signature(function).parameters if p != "self")


# -- upstream names and signatures ----------------------------------------------------------


@pytest.mark.parametrize(("dotted", "expected"), UPSTREAM, ids=[d for d, _ in UPSTREAM])
def test_each_upstream_callable_relied_on_keeps_its_parameters(
    dotted: str, expected: tuple[str, ...]
) -> None:
    target = _resolve(dotted)  # AttributeError: renamed or gone upstream
    assert _parameters(target) == expected, f"{dotted}{inspect.signature(target)} changed"


OVERRIDES = [
    (HookedEngineIO, engineio.AsyncServer, "create_queue"),
    (HookedEngineIO, engineio.AsyncServer, "send_packet"),
    (HookedSocketIO, socketio.AsyncServer, "_handle_eio_message"),
    (HookedSocketIO, socketio.AsyncServer, "_handle_eio_disconnect"),
    (HookedSocketIO, socketio.AsyncServer, "_handle_event"),
    (HookedSocketIO, socketio.AsyncServer, "_engineio_server_class"),
]


@pytest.mark.parametrize(("ours", "theirs", "name"), OVERRIDES, ids=[o[2] for o in OVERRIDES])
def test_each_override_matches_the_method_it_replaces(ours: type, theirs: type, name: str) -> None:
    assert name in vars(ours), f"{ours.__name__} no longer overrides {name}"
    assert inspect.iscoroutinefunction(getattr(ours, name)) == inspect.iscoroutinefunction(
        getattr(theirs, name)
    )
    assert _parameters(getattr(ours, name)) == _parameters(getattr(theirs, name))


def test_the_upstream_constants_and_instance_attributes_relied_on_are_there() -> None:
    assert engineio.packet.packet_names[engineio.packet.MESSAGE] == "MESSAGE"
    assert (socketio.packet.EVENT, socketio.packet.ACK) == (2, 3)
    sio = socketio.AsyncServer(async_mode="asgi")
    assert sio._binary_packet == {}
    assert {"connect", "disconnect"} <= set(sio.reserved_events)
    assert sio.packet_class is socketio.packet.Packet
    assert type(sio.manager) is socketio.AsyncManager
    eio = sio.eio
    assert eio.sockets == {}
    assert eio._async["websocket"] is engineio.async_drivers.asgi.WebSocket
    socket = AsyncSocket(eio, "e1")
    assert isinstance(socket.queue, asyncio.Queue)
    assert (socket.sid, socket.closed, socket.closing) == ("e1", False, False)
    pending = socketio.packet.Packet(encoded_packet='52-7["voice",{"_placeholder":true,"num":0}]')
    assert (pending.attachment_count, pending.attachments, pending.id) == (2, [], 7)


# -- the interface on real servers ----------------------------------------------------------


def _server(limit: int = 1_000) -> BoundedAsyncServer:
    return BoundedAsyncServer(async_mode="asgi", async_handlers=False, send_buffer_bytes=limit)


def _socket(sio: BoundedAsyncServer, eio_sid: str = "e1") -> AsyncSocket:
    socket = AsyncSocket(sio.eio, eio_sid)
    sio.eio.sockets[eio_sid] = socket
    return socket


def _queued(socket: AsyncSocket) -> list[Any]:
    """What the socket's writer would send next, taken off its queue."""
    out = []
    while not socket.queue.empty():
        pkt = socket.queue.get_nowait()
        socket.queue.task_done()
        out.append(pkt.data if pkt is not None else None)
    return out


async def test_each_socket_gets_the_servers_send_queue_and_websocket() -> None:
    sio = _server(limit=1234)
    assert isinstance(sio.eio, BoundedEngineIO)
    socket = _socket(sio)
    assert isinstance(socket.queue, SendBuffer)
    assert socket.queue.limit == 1234
    # The websocket driver is wrapped for this server only: the module's table is shared.
    assert engineio.async_drivers.asgi._async["websocket"] is engineio.async_drivers.asgi.WebSocket
    assert issubclass(sio.eio._async["websocket"], engineio.async_drivers.asgi.WebSocket)
    assert sio.eio._async["websocket"] is not engineio.async_drivers.asgi.WebSocket
    # Engine.IO's other queues are plain.
    assert type(sio.eio.create_queue(maxsize=1)) is asyncio.Queue


async def test_send_packet_nowait_queues_to_the_limit_then_cuts_the_socket_off() -> None:
    sio = _server(limit=100)
    socket = _socket(sio)
    (frame,) = encode_event(sio, "message", {"text": "x" * 20})
    size = frame_size(frame)
    assert size == len('2["message",{"text":"xxxxxxxxxxxxxxxxxxxx"}]') + 1
    fitting = 100 // size
    for _ in range(fitting):
        sio.eio.send_packet_nowait("e1", frame)
    assert socket.queue.bytes == fitting * size
    sio.eio.send_packet_nowait("e1", frame)  # past the limit: refused, the socket cut off
    sio.eio.send_packet_nowait("e1", frame)  # refused again, no second cut-off
    assert socket.queue.bytes == fitting * size
    for _ in range(10):
        await asyncio.sleep(0)
    assert sio.eio.overflows == 1
    assert socket.closed
    assert _queued(socket) == [None], "what was queued is dropped; the writer is told to end"
    sio.eio.send_packet_nowait("e1", frame)  # a closed socket takes nothing
    assert _queued(socket) == []


async def test_an_empty_queue_takes_a_packet_larger_than_the_limit() -> None:
    sio = _server(limit=10)
    socket = _socket(sio)
    frames = encode_event(sio, "message", {"text": "y" * 100})
    sio.eio.send_packet_nowait("e1", frames[0])
    assert socket.queue.bytes == frame_size(frames[0]) > 10
    assert sio.eio.overflows == 0
    await sio.eio.send_packet("e1", engineio.packet.Packet(engineio.packet.NOOP))
    assert sio.eio.overflows == 1  # nothing fits behind it
    assert _queued(socket) == [None]


async def test_the_awaited_send_path_is_bounded_too() -> None:
    sio = _server(limit=50)
    socket = _socket(sio)
    await sio.eio.send("e1", "a" * 30)
    await sio.eio.send("e1", "b" * 10)
    assert _queued(socket) == ["a" * 30, "b" * 10]
    await sio.eio.send("e1", "c" * 30)
    await sio.eio.send("e1", "d" * 30)  # 31 + 31 > 50
    assert sio.eio.overflows == 1
    assert socket.closed
    assert _queued(socket) == [None]


async def test_encode_event_gives_the_packets_emit_would_send() -> None:
    sio = _server()
    (frame,) = encode_event(sio, "message", {"id": "m1", "n": 1})
    assert frame.encode() == '42["message",{"id":"m1","n":1}]'
    header, attachment = encode_event(sio, "aiAudio", {"audio": b"\x00\x01"})
    assert header.encode() == '451-["aiAudio",{"audio":{"_placeholder":true,"num":0}}]'
    assert attachment.data == b"\x00\x01"
    assert frame_size(attachment) == 3
    assert frame_size(None) == 0


async def test_local_members_and_direct_fan_out() -> None:
    sio = _server()
    sid = await sio.manager.connect("e1", "/")
    await sio.manager.enter_room(sid, "/", "r1")
    other = await sio.manager.connect("e2", "/")
    await sio.manager.enter_room(other, "/", "r2")
    assert list(local_members(sio, "r1")) == [(sid, "e1")]
    assert list(local_members(sio, "nobody")) == []
    assert fans_out_directly(sio)
    assert not fans_out_directly(socketio.AsyncServer(async_mode="asgi"))
    assert not fans_out_directly(object())


class _Transport:
    """The ASGI side of one websocket: frames to receive, and sends that may hang."""

    def __init__(self, frames: list[str | bytes]) -> None:
        self.frames = frames
        self.sent: list[Any] = []
        self.stuck = False

    async def receive(self) -> dict[str, Any]:
        if not self.frames:
            await asyncio.Event().wait()  # nothing more from the client
        frame = self.frames.pop(0)
        key = "bytes" if isinstance(frame, bytes) else "text"
        return {"type": "websocket.receive", key: frame}

    async def send(self, message: dict[str, Any]) -> None:
        if self.stuck:
            await asyncio.Event().wait()  # the client's TCP window is shut
        self.sent.append(message)


async def test_the_websocket_drops_undecodable_frames_and_can_be_aborted() -> None:
    sio = _server()
    socket = _socket(sio)
    websocket = sio.eio._async["websocket"](socket._websocket_handler, sio.eio)
    assert getattr(socket, engine_hooks._WEBSOCKET) is websocket
    # A MESSAGE whose payload is no Socket.IO packet is dropped before Engine.IO's decoder
    # would run json.loads over all of it.
    junk_json = "4[" + "1," * 10_000 + "1]"
    transport = _Transport(["", "hello", "\x00", "4hi", junk_json, "4", "9x", "42[]", b"\x04raw"])
    websocket.asgi_receive, websocket.asgi_send = transport.receive, transport.send
    assert await websocket.wait() == "42[]"
    assert await websocket.wait() == b"\x04raw"
    for frame in ("2probe", "3", "5", "6", "bAAE=", "40", "451-[]"):
        assert engine_hooks._decodable(frame), frame
    await websocket.send("42[]")
    assert transport.sent == [{"type": "websocket.send", "bytes": None, "text": "42[]"}]

    transport.stuck = True
    sending = asyncio.create_task(websocket.send("42[1]"))
    reading = asyncio.create_task(websocket.wait())
    await asyncio.sleep(0.01)
    websocket.abort()
    for task in (sending, reading):
        with pytest.raises(ConnectionAbortedError):
            await task
    with pytest.raises(ConnectionAbortedError):
        await websocket.send("42[2]")
    await websocket.close()  # no close frame after an abort
    assert len(transport.sent) == 1


async def test_cut_off_aborts_the_sockets_websocket() -> None:
    sio = _server()
    socket = _socket(sio)
    websocket = sio.eio._async["websocket"](socket._websocket_handler, sio.eio)
    await sio.eio.cut_off("e1")
    assert websocket.aborted
    assert socket.closed
    assert _queued(socket) == [None]
    await sio.eio.cut_off("gone")  # an unknown socket: nothing to do


def _acks(socket: AsyncSocket) -> list[tuple[int, Any]]:
    out = []
    for data in _queued(socket):
        pkt = socketio.packet.Packet(encoded_packet=data)
        out.append((pkt.id, pkt.data))
    return out


async def test_socketio_dispatch_is_hardened() -> None:
    sio = _server()
    socket = _socket(sio)
    sio.environ["e1"] = {}

    @sio.on("ping")  # type: ignore[misc]
    async def ping(sid: str, data: Any) -> Any:
        return {"ok": True, "pong": data}

    await sio._handle_eio_message("e1", "0")  # CONNECT to "/"
    (connected,) = _queued(socket)
    assert connected.startswith('0{"sid":')
    assert sio.manager.sid_from_eio_sid("e1", "/") is not None

    await sio._handle_eio_message("e1", '23["ping",1]')
    assert _acks(socket) == [(3, [{"ok": True, "pong": 1}])]

    # Junk is dropped and the connection stays.
    for junk in ["9zz", "2[unclosed", '51-["ping"', "5x"]:
        await sio._handle_eio_message("e1", junk)
    assert _queued(socket) == []
    assert sio._binary_packet == {}

    # Lifecycle and unnamed events are refused, not run.
    refusal = sio.refusal("not_an_event")
    assert refusal["error"]["code"] == "bad_request"
    await sio._handle_eio_message("e1", '24["disconnect"]')
    await sio._handle_eio_message("e1", "25[42]")
    await sio._handle_eio_message("e1", '2["disconnect"]')  # no ack asked: no answer
    assert _acks(socket) == [(4, [refusal]), (5, [refusal])]
    assert sio.manager.sid_from_eio_sid("e1", "/") is not None

    # Too many attachments: they pass uncounted and the event is refused after the last.
    await sio._handle_eio_message("e1", '55-6["ping",{"_placeholder":true,"num":0}]')
    assert sio._binary_packet == {}
    for _ in range(5):
        assert _acks(socket) == []
        await sio._handle_eio_message("e1", b"\x00" * 10)
    too_many = sio.refusal("too_many_attachments")
    assert too_many["error"]["code"] == "too_large"
    assert _acks(socket) == [(6, [too_many])]

    # Within the limit a binary event is handled as usual.
    await sio._handle_eio_message("e1", '51-7["ping",{"_placeholder":true,"num":0}]')
    await sio._handle_eio_message("e1", b"\x01\x02")
    assert _queued(socket) == [
        '61-7[{"ok":true,"pong":{"_placeholder":true,"num":0}}]',
        b"\x01\x02",
    ]

    await sio._handle_eio_message("e1", '55-8["ping",{"_placeholder":true,"num":0}]')
    await sio._handle_eio_disconnect("e1", sio.reason.CLIENT_DISCONNECT)
    assert sio._skipping == {}


def test_the_refusals_are_acks_of_our_protocol() -> None:
    sio = _server()
    for reason in ("not_an_event", "too_many_attachments"):
        answer = sio.refusal(reason)
        assert answer["ok"] is False
        assert json.loads(json.dumps(answer)) == answer
    assert HookedSocketIO(async_mode="asgi").refusal("not_an_event") is None


class _Gate:
    """A packet gate that lets ``allowed`` packets in, then refuses every other one."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.seen: list[tuple[str, int]] = []
        self.forgotten: list[str] = []

    def admit(self, eio_sid: str, size: int) -> Any | None:
        self.seen.append((eio_sid, size))
        if len(self.seen) <= self.allowed:
            return None
        return {"ok": False, "error": {"code": "rate_limited", "retryAfter": 1.5}}

    def forget(self, eio_sid: str) -> None:
        self.forgotten.append(eio_sid)


async def test_the_packet_gate_sees_raw_packets_and_refuses_them_undecoded() -> None:
    sio = _server()
    socket = _socket(sio)
    sio.environ["e1"] = {}
    gate = _Gate(allowed=3)
    sio.gate = gate
    handled: list[Any] = []

    @sio.on("ping")  # type: ignore[misc]
    async def ping(sid: str, data: Any) -> Any:
        handled.append(data)
        return {"ok": True}

    await sio._handle_eio_message("e1", "0")  # CONNECT: a packet too
    _queued(socket)
    await sio._handle_eio_message("e1", '21["ping",1]')
    # A binary event let in: its attachment is part of it, not a packet of its own.
    await sio._handle_eio_message("e1", '51-2["ping",{"_placeholder":true,"num":0}]')
    await sio._handle_eio_message("e1", b"\x01")
    assert handled == [1, b"\x01"]
    assert gate.seen == [("e1", 1), ("e1", 12), ("e1", 42)]
    _queued(socket)

    refused = {"ok": False, "error": {"code": "rate_limited", "retryAfter": 1.5}}
    # Refused from its head alone: the JSON after it is broken and never read.
    await sio._handle_eio_message("e1", '23["ping",{"broken')
    await sio._handle_eio_message("e1", '2/,4["ping",1]')  # a namespace, then the id
    await sio._handle_eio_message("e1", '2["ping",1]')  # no ack asked: no answer
    assert _acks(socket) == [(3, [refused]), (4, [refused])]
    # A refused binary event: its attachments pass uncounted, then it is answered.
    await sio._handle_eio_message("e1", '52-5["ping",{"_placeholder":true,"num":0}]')
    await sio._handle_eio_message("e1", b"\x00" * 100)
    assert _acks(socket) == []
    await sio._handle_eio_message("e1", b"\x00" * 100)
    assert _acks(socket) == [(5, [refused])]
    assert len(gate.seen) == 7, "attachments of a refused event are not packets"
    assert handled == [1, b"\x01"]
    await sio._handle_eio_disconnect("e1", sio.reason.CLIENT_DISCONNECT)
    assert gate.forgotten == ["e1"]

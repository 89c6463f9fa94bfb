"""A slow or stalled client never slows its room: what the server queues for it is bounded,
past the bound it is disconnected, and when it comes back it catches up with ``since``."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import uvicorn

from tests.conftest import RunningServer
from tests.hardening.conftest import GENEROUS, StartServer
from tests.support.polling import eventually
from tests.support.room_client import RoomClient
from tests.support.settings import make_settings
from tomchat.app import create_app
from tomchat.domain.events import MessagePosted
from tomchat.live.sendbuffer import BoundedEngineIO, SendBuffer

pytestmark = pytest.mark.timeout(120)

LIMIT = 64 * 1024
MESSAGES = 600  # 2.5 MB to every member: far more than the socket buffers hold
PER_APPEND = 50


class RawWebSocket:
    """Just enough of a websocket client to join a room and then stop reading.

    Written out by hand so that nothing reads on its behalf: its stream reader holds at
    most a couple of KiB before the transport stops reading, and its socket's receive
    buffer is tiny, so the server's writes back up as they would for a phone in a tunnel.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, url: str) -> RawWebSocket:
        host, port = url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def send(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        length = len(payload)
        header = bytes([0x81]) + (
            bytes([0x80 | length])
            if length < 126
            else bytes([0x80 | 126]) + struct.pack("!H", length)
        )
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + mask + masked)
        await self.writer.drain()

    async def recv(self) -> str:
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        data = await self.reader.readexactly(length)
        assert first & 0x0F == 0x1, "a text frame"
        return data.decode()

    def close(self) -> None:
        self.writer.close()


def member_key(username: str) -> str:
    """The key a test member's name is bound to, so it can come back under it."""
    return f"{username}-key-0123456789abcdef"


async def stalled_member(url: str, room: str, username: str) -> tuple[RawWebSocket, int]:
    """A client that joins, then never reads again."""
    ws = await RawWebSocket.connect(url)
    assert (await ws.recv()).startswith("0")
    await ws.send("40")
    assert (await ws.recv()).startswith("40")
    join = {"roomId": room, "username": username, "memberKey": member_key(username)}
    await ws.send("420" + json.dumps(["joinRoom", join]))
    while True:
        frame = await ws.recv()
        if frame.startswith("430"):
            ack = json.loads(frame[3:])[0]
            assert ack["ok"], ack
            return ws, int(ack["version"])


@pytest.fixture
async def small_buffers(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A server whose connections have small kernel send buffers (accepted sockets inherit
    the listening socket's), so a stalled reader backs up into the server's own queue after
    a few hundred KiB, not after the megabytes Linux would otherwise let it absorb."""
    # A catch-up of all of it in one ack: past the default cap it would be a reset snapshot.
    limits = replace(GENEROUS, send_buffer_bytes=LIMIT, catch_up_bytes=8 * 1024 * 1024)
    settings = make_settings(tmp_path, live_limits=limits)
    app = create_app(settings)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    sock.bind(("127.0.0.1", settings.port))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await eventually(lambda: server.started, timeout=20)
    yield RunningServer(f"http://127.0.0.1:{settings.port}", app.services, settings)
    server.should_exit = True
    await task
    sock.close()


async def test_a_stalled_client_is_cut_off_and_catches_up_later(
    small_buffers: RunningServer,
) -> None:
    server = small_buffers
    live = server.services.live
    assert live is not None
    eio: BoundedEngineIO = live.sio.eio
    ann = RoomClient(server.url, "slow", "ann")
    await ann.connect()
    await ann.join()
    stalled, left_at = await stalled_member(server.url, "slow", "sam")
    try:
        await ann.wait_for(lambda c: c.presence == ["ann", "sam"])
        sam_sid = next(
            sid for sid, rooms in live.presence._rooms.items() if rooms.get("slow") == "sam"
        )
        buffer = eio.sockets[live.sio.manager.eio_sid_from_sid(sam_sid, "/")].queue
        assert isinstance(buffer, SendBuffer)

        # The room talks: big messages, straight into the log, as fast as it takes them.
        started = time.perf_counter()
        for first in range(0, MESSAGES, PER_APPEND):
            await server.services.store.append(
                "slow",
                [
                    MessagePosted(
                        message_id=f"m{i}", username="bob", content=f"{i:05d} " + "x" * 3994
                    )
                    for i in range(first, first + PER_APPEND)
                ],
            )
        head = left_at + MESSAGES
        await ann.wait_for(lambda c: c.version == head, timeout=60)
        took = time.perf_counter() - started
        # ann got every event, in order, while sam read nothing.
        assert ann.applied == list(range(3, head + 1))
        assert took < 30, f"the room took {took:.1f} s to reach its reader"

        # sam was disconnected once its queue passed the limit, and never held much more.
        assert eio.overflows == 1
        one_packet = 5 * 1024  # the largest packet here: one message event
        assert LIMIT - one_packet < buffer.high_water <= LIMIT, buffer.high_water
        assert buffer.bytes <= 1 + one_packet, "what was queued for sam was dropped"
        await ann.wait_for(lambda c: c.presence == ["ann"])
    finally:
        stalled.close()

    # sam comes back, from the version it last had, and gets exactly the rest.
    sam = RoomClient(server.url, "slow", "sam", member_key=member_key("sam"))
    sam.version = left_at
    ack = await sam.reconnect()
    assert [e["version"] for e in ack["events"]] == list(range(left_at + 1, head + 1))
    assert sam.applied == list(range(left_at + 1, head + 1))
    assert sam.lines["m0"].content.startswith("00000 ")
    assert sam.lines[f"m{MESSAGES - 1}"].content.startswith(f"{MESSAGES - 1:05d} ")
    await sam.disconnect()
    await ann.disconnect()


async def test_a_slow_reader_that_keeps_up_is_left_alone(start: StartServer) -> None:
    """The limit is on what waits, not on what passes: a reader that keeps up with a busy
    room is never cut off."""
    server = await start(live_limits=replace(GENEROUS, send_buffer_bytes=LIMIT))
    live = server.services.live
    assert live is not None
    ann = RoomClient(server.url, "busy", "ann")
    await ann.connect()
    await ann.join()
    for first in range(0, 400, 20):
        await server.services.store.append(
            "busy",
            [
                MessagePosted(message_id=f"b{i}", username="bob", content="y" * 2000)
                for i in range(first, first + 20)
            ],
        )
        await asyncio.sleep(0.01)
    await ann.wait_for(lambda c: c.version == 403, timeout=30)
    assert live.sio.eio.overflows == 0

    async def still_member() -> bool:
        return await live.presence.members("busy") == ["ann"]

    await eventually(still_member)
    await ann.disconnect()

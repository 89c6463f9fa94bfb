"""Slowloris and stalled bodies (``tomchat.http.slow_clients``): a ``tomchat serve`` process
with 2 s deadlines closes 300 half-sent request heads and 20 half-sent bodies (the times are
printed, not asserted), while websockets and ordinary requests carry on."""

from __future__ import annotations

import asyncio
import inspect
import time
from pathlib import Path

import httpx
import pytest
import socketio
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tests.support.servers import start_servers
from tomchat.http.slow_clients import UPSTREAM, GuardedHttpTools

pytestmark = pytest.mark.timeout(120)

DEADLINE = 2.0


@pytest.mark.parametrize(("name", "expected"), UPSTREAM, ids=[n for n, _ in UPSTREAM])
def test_each_uvicorn_method_overridden_keeps_its_parameters(
    name: str, expected: tuple[str, ...]
) -> None:
    theirs = getattr(HttpToolsProtocol, name)  # AttributeError: renamed or gone upstream
    params = tuple(p for p in inspect.signature(theirs).parameters if p != "self")
    assert params == expected, f"HttpToolsProtocol.{name}{inspect.signature(theirs)} changed"
    assert name in vars(GuardedHttpTools)
    ours = tuple(p for p in inspect.signature(getattr(GuardedHttpTools, name)).parameters)
    assert ours[1:] == expected


async def _held_open(port: int, first_bytes: bytes) -> tuple[float, bytes]:
    """Send ``first_bytes`` and nothing more; how long until the server closed, and what it
    said meanwhile."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(first_bytes)
    await writer.drain()
    began = time.monotonic()
    said = b""
    try:
        async with asyncio.timeout(30):
            while chunk := await reader.read(4096):
                said += chunk
    except (TimeoutError, ConnectionError):
        pass
    took = time.monotonic() - began
    writer.close()
    return took, said


def _summary(what: str, results: list[tuple[float, bytes]]) -> str:
    times = sorted(t for t, _ in results)
    closed = sum(1 for t in times if t < 30)
    return (
        f"{what}: {closed} of {len(times)} closed by the server; "
        f"p50 {times[len(times) // 2]:.2f} s, max {times[-1]:.2f} s (deadline {DEADLINE} s)"
    )


async def test_half_open_requests_are_closed_within_the_deadline(tmp_path: Path) -> None:
    env = {
        "TOMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'slow.db'}",
        "TOMCHAT_MEDIA_DIR": str(tmp_path / "media"),
        "TOMCHAT_LLM": "demo",
        "TOMCHAT_REDIS_URL": "",
        "TOMCHAT_HTTP_HEAD_TIMEOUT": str(DEADLINE),
        "TOMCHAT_HTTP_BODY_TIMEOUT": str(DEADLINE),
    }
    [server] = await start_servers(env, tmp_path, ["slow"])
    figures: list[str] = []
    try:
        # A websocket outlives both deadlines: they are for reading requests only.
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(server.url, transports=["websocket"], wait_timeout=10)

        heads = [
            _held_open(server.port, b"GET /api/health HTTP/1.1\r\nHost: t\r\nX-Slow: 1\r\n")
            for _ in range(300)
        ]
        bodies = [
            _held_open(
                server.port,
                b"POST /api/rooms HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n" + b'{"name": "sl',
            )
            for _ in range(20)
        ]
        # Meanwhile the server answers everyone else, over a kept-alive connection too.
        async with httpx.AsyncClient(base_url=server.url) as http:
            held = asyncio.gather(*heads, *bodies)
            for _ in range(5):
                assert (await http.get("/api/health")).status_code == 200
                await asyncio.sleep(0.5)
            results = await held
            assert (await http.get("/api/health")).status_code == 200
        head_results, body_results = results[:300], results[300:]
        figures.append(_summary("300 half-sent request heads", head_results))
        figures.append(_summary("20 half-sent request bodies", body_results))
        assert all(t < 30 for t, _ in results), figures
        for _, said in results:
            assert said.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), said[:100]
            assert said.endswith(b"the request came too slowly\n")

        ack = await sio.call("joinRoom", {"roomId": "still-here", "username": "ann"}, timeout=10)
        assert ack["ok"] and ack["version"] == 3
        await sio.disconnect()
    finally:
        server.stop()
        print("\n" + "\n".join(figures))

"""Every response bounded in bytes: a catch-up ack never passes ``CATCH_UP_MAX_BYTES`` on the
wire (past it the snapshot form with ``reset``, itself trimmed to the newest messages that
fit), and streamed exports and event feeds stop reading once their client stops."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench.export_bench import bulk_insert, session

from tests.hardening.conftest import GENEROUS, StartServer, call, connect
from tests.support.servers import start_servers
from tomchat.chat.export import FORMATS
from tomchat.domain import limits
from tomchat.domain.events import ReplyCompleted, ReplyStarted
from tomchat.http.api import NDJSON
from tomchat.store.migrate import upgrade_async
from tomchat.wire.payloads import ErrorBody, to_wire, wire_size

pytestmark = pytest.mark.timeout(90)


def packet_bytes(ack: Any) -> int:
    """What python-socketio sends for this ack: JSON with non-ASCII escaped."""
    return len(json.dumps(ack, separators=(",", ":")))


def test_wire_size_is_what_python_socketio_sends() -> None:
    for text in ("plain", "héllo", "日本語", "😀 and 𝄞", '\x01\n"\\/', "\u2028"):
        body = ErrorBody(code="x", message=text)
        assert wire_size(body) == packet_bytes(to_wire(body)), text


async def test_catch_up_acks_are_capped_in_bytes(start: StartServer) -> None:
    server = await start(live_limits=GENEROUS)
    sio = await connect(server)
    joined = await call(sio, "joinRoom", {"roomId": "big", "username": "ann"})
    assert joined["ok"] and joined["version"] == 3
    # 40 replies of 16,000 characters that each take 96,000 bytes escaped: 3.8 MB of log,
    # far below the 10,000-event cap.
    store = server.services.store
    for i in range(40):
        reply = f"r{i:02d}"
        text = f"{reply} " + "é" * 15_996
        await store.append(
            "big",
            [
                ReplyStarted(message_id=reply, character="Tom"),
                ReplyCompleted(message_id=reply, content=text, status="complete"),
            ],
        )
    head = 3 + 80

    for event, payload in [
        ("joinRoom", {"roomId": "big", "username": "ann", "since": 3}),
        ("joinRoom", {"roomId": "big", "username": "ann", "since": 0}),
        ("resync", {"roomId": "big", "since": 3}),
    ]:
        ack = await call(sio, event, payload)
        size = packet_bytes(ack)
        print(
            f"\n{event} since={payload['since']}: {size:,} bytes, {len(ack['messages'])} messages"
        )
        assert ack["ok"] and ack["reset"] is True and ack["version"] == head, event
        assert size <= limits.CATCH_UP_MAX_BYTES, size
        assert ack["hasMore"] is True, "older messages are a page away"
        ids = [m["id"] for m in ack["messages"]]
        assert 5 <= len(ids) < limits.SNAPSHOT_PAGE
        assert ids == [f"r{i:02d}" for i in range(40 - len(ids), 40)], "the newest, in order"
        assert all(len(m["content"]) == 16_000 for m in ack["messages"]), "never cut inside"

    # A catch-up that fits is still the event list.
    small = await call(sio, "resync", {"roomId": "big", "since": head - 4})
    assert [e["version"] for e in small["events"]] == list(range(head - 3, head + 1))
    assert packet_bytes(small) <= limits.CATCH_UP_MAX_BYTES
    # A plain join (no since) is the snapshot trimmed alike, without reset.
    plain = await call(sio, "joinRoom", {"roomId": "big", "username": "bob"})
    assert "reset" not in plain and packet_bytes(plain) <= limits.CATCH_UP_MAX_BYTES
    assert plain["messages"][-1]["id"] == "r39"
    await sio.disconnect()


# -- stalled readers ----------------------------------------------------------------------


def _status_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stalled_get(port: int, path: str, accept: str = "*/*") -> socket.socket:
    """A GET whose client reads nothing: its receive window is a few kB and stays full."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nAccept: {accept}\r\n\r\n".encode())
    return sock


async def _settled(pid: int, limit: float = 30) -> float:
    """Wait until the server stops working (its CPU time stands still); seconds waited."""
    started = time.monotonic()
    last = _cpu_seconds(pid)
    while time.monotonic() - started < limit:
        await asyncio.sleep(0.5)
        now = _cpu_seconds(pid)
        if now - last < 0.03:
            break
        last = now
    return time.monotonic() - started


async def _health_ms(http: httpx.AsyncClient, n: int = 20) -> list[float]:
    took = []
    for _ in range(n):
        began = time.perf_counter()
        assert (await http.get("/api/health")).status_code == 200
        took.append((time.perf_counter() - began) * 1000)
    return sorted(took)


async def test_stalled_downloads_and_feeds_pin_little_memory(tmp_path: Path) -> None:
    """32 exports and 16 event feeds of a 40,000-message room that nobody reads: the memory
    they take together, health meanwhile, and the memory left once they are gone (printed;
    memory is asserted, time never)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'big.db'}"
    await upgrade_async(url)
    await asyncio.to_thread(bulk_insert, url, "big", session("big", 40_000))
    env = {
        "TOMCHAT_DATABASE_URL": url,
        "TOMCHAT_MEDIA_DIR": str(tmp_path / "media"),
        "TOMCHAT_LLM": "demo",
        "TOMCHAT_REDIS_URL": "",
    }
    [server] = await start_servers(env, tmp_path, ["stalled"])
    figures: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            whole = await http.get("/api/rooms/big/transcript?format=json")
            assert whole.status_code == 200 and whole.json()["count"] == 40_000
            figures.append(f"export file: {len(whole.content) / 1e6:.1f} MB")
            await _settled(server.pid)
            base = _status_mb(server.pid)
            quiet = await _health_ms(http)
            for what, paths, accept in [
                (
                    "32 stalled exports",
                    [f"/api/rooms/big/transcript?format={f}" for f in FORMATS] * 8,
                    "*/*",
                ),
                ("16 stalled event feeds", ["/api/rooms/big/events"] * 16, NDJSON),
            ]:
                before = _status_mb(server.pid)
                cpu = _cpu_seconds(server.pid)
                socks = [_stalled_get(server.port, p, accept) for p in paths]
                waited = await _settled(server.pid)
                held = _status_mb(server.pid)
                health = await _health_ms(http)
                for sock in socks:
                    sock.close()
                await _settled(server.pid)
                await asyncio.sleep(1)  # memory goes back half a second after the last ends
                after = _status_mb(server.pid)
                figures.append(
                    f"{what}: RSS {before:.0f} -> {held:.0f} MB (+{held - before:.1f} MB) "
                    f"after {waited:.1f} s and {_cpu_seconds(server.pid) - cpu:.2f} CPU-s; "
                    f"health p50 {health[len(health) // 2]:.1f} ms, max {health[-1]:.1f} ms "
                    f"(idle p50 {quiet[len(quiet) // 2]:.1f} ms); after closing: {after:.0f} MB"
                )
                assert held - before < 100, figures[-1]
                assert after - base < 50, f"memory not returned: {figures[-1]}"
                # The server is still whole: every file is there, from the start.
                again = await http.get("/api/rooms/big/transcript?format=jsonl")
                assert again.content.count(b"\n") == 40_000
    finally:
        server.stop()
        print("\n" + "\n".join(figures))

"""Junk floods cost the server little: packets are counted on the raw frame, before any JSON
is decoded, and Engine.IO messages that are no Socket.IO packet are dropped unparsed. The CPU
the server spends per MB of junk is printed (time is never asserted)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import pytest
import socketio

from tests.support.servers import start_servers

pytestmark = pytest.mark.timeout(120)

FRAME = 1024 * 1024
FRAMES = 60  # per kind of junk


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_a_junk_flood_costs_little_cpu(tmp_path: Path) -> None:
    env = {
        "TOMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'junk.db'}",
        "TOMCHAT_MEDIA_DIR": str(tmp_path / "media"),
        "TOMCHAT_LLM": "demo",
        "TOMCHAT_REDIS_URL": "",
    }
    [server] = await start_servers(env, tmp_path, ["junk"])
    figures: list[str] = []
    try:
        # JSON that is dear to decode: a million small values, not one long string.
        many = ",".join(["1"] * (FRAME // 2))
        kinds = {
            # A Socket.IO event with a huge argument, as a client library would send it.
            "Socket.IO events": '42["sendMessage",[' + many + "]]",
            # An Engine.IO message that is one big JSON array (no Socket.IO packet at all).
            "JSON arrays": "[" + many + "]",
        }
        async with httpx.AsyncClient(base_url=server.url) as http:
            for kind, payload in kinds.items():
                sio = socketio.AsyncClient(reconnection=False)
                await sio.connect(server.url, transports=["websocket"], wait_timeout=10)
                await asyncio.sleep(0.5)
                cpu = _cpu_seconds(server.pid)
                began = time.perf_counter()
                for _ in range(FRAMES):
                    # Straight onto the websocket: Engine.IO MESSAGE frames, as they are.
                    await sio.eio.send(payload)
                # The flood is in when the server answers a packet sent after it (refused
                # or not: the frames of one websocket arrive in order).
                answer = await sio.call("leaveRoom", {"roomId": "x"}, timeout=60)
                assert answer["ok"] or answer["error"]["code"] == "rate_limited", answer
                for _ in range(50):
                    before = _cpu_seconds(server.pid)
                    await asyncio.sleep(0.3)
                    if _cpu_seconds(server.pid) - before < 0.02:
                        break
                spent = _cpu_seconds(server.pid) - cpu
                took = time.perf_counter() - began
                health = []
                for _ in range(10):
                    t = time.perf_counter()
                    assert (await http.get("/api/health")).status_code == 200
                    health.append((time.perf_counter() - t) * 1000)
                mb = FRAMES * len(payload) / 1e6
                figures.append(
                    f"{FRAMES} frames of {kind}, {mb:.0f} MB: {spent:.2f} CPU-s "
                    f"({spent / mb * 1000:.1f} CPU-ms per MB) in {took:.1f} s; "
                    f"health p50 {sorted(health)[5]:.1f} ms afterwards"
                )
                await sio.disconnect()
            # The server took nothing from the junk, and still serves.
            rooms = (await http.get("/api/rooms")).json()
            assert rooms["rooms"] == []
    finally:
        server.stop()
        print("\n" + "\n".join(figures))

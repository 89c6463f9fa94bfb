"""Operating a real ``tomchat serve``: SIGTERM/SIGINT mid-reply, readiness, ``/metrics``, JSON logs."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest
import socketio
from prometheus_client.parser import text_string_to_metric_families

from tests.support.room_client import RoomClient
from tests.support.servers import start_servers
from tests.test_serve_lifecycle import reply_text, room_log, streaming_reply
from tomchat.domain.events import ReplyChunk, ReplyCompleted

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "TOMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'tomchat.db'}",
        "TOMCHAT_MEDIA_DIR": str(tmp_path / "media"),
        "TOMCHAT_LLM": "demo",
        "TOMCHAT_TTS": "none",
        "TOMCHAT_ASR": "none",
        "TOMCHAT_DEMO_DELAY_MS": "50",
        "TOMCHAT_REDIS_URL": "",
    }


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_mid_reply_exits_fast_and_interrupts_it(
    env: dict[str, str], tmp_path: Path, sig: signal.Signals
) -> None:
    [server] = await start_servers(env, tmp_path, ["single"])
    # A browser before its upgrade holds a long-poll open: it must not hold the exit.
    poller = socketio.AsyncClient(reconnection=False)
    try:
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"{server.url}/api/ready")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "ready": True,
            "status": "ready",
            "database": "ok",
            "migrations": "current",
            "redis": "disabled",
        }
        await poller.connect(server.url, transports=["polling"], wait_timeout=10)
        ann = RoomClient(server.url, "calm", "ann", sio=socketio.AsyncClient(reconnection=False))
        await ann.connect()
        await ann.join()
        await ann.send("Tell me a long story about the northern lights")
        reply = await streaming_reply(ann)
        sent = time.monotonic()
        server.proc.send_signal(sig)
        status = server.proc.wait(timeout=10)
        took = time.monotonic() - sent
        print(f"{sig.name}: exited {status} after {took:.2f} s")
        assert took < 2.0, server.output()
        assert status in (0, -sig, 128 + sig), server.output()
        assert "Traceback" not in server.output(), server.output()
    finally:
        server.stop()
        await poller.disconnect()
    log = await room_log(env["TOMCHAT_DATABASE_URL"], "calm")
    assert [e.version for e in log] == list(range(1, len(log) + 1))
    [closed] = [
        e.event for e in log if isinstance(e.event, ReplyCompleted) and e.event.message_id == reply
    ]
    assert closed.status == "interrupted"
    assert closed.content == reply_text(log, reply)
    assert closed.content.startswith(ann.text_of(reply))
    assert log[-1].event == closed, "the close is the last thing written"
    # The room saw it end that way before its socket was closed.
    assert ann.status_of(reply) == "interrupted", server.output()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_what_happened(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "TOMCHAT_DEMO_DELAY_MS": "5"}
    [server] = await start_servers(env, tmp_path, ["single"])
    try:
        ann = RoomClient(server.url, "counted", "ann")
        await ann.connect()
        await ann.join()
        await ann.send("hello")
        await ann.wait_for(
            # The greeting and the reply, both complete.
            lambda c: [x.status for x in c.lines.values() if x.is_ai] == ["complete"] * 2
        )
        refused = await ann.call("sendMessage", {"roomId": "counted"})  # no content
        assert refused["ok"] is False
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"{server.url}/metrics")
        assert answer.status_code == 200
        content_type = answer.headers["content-type"]
        assert content_type.startswith("text/plain; version="), content_type
        assert content_type.count("charset=utf-8") == 1, content_type
        samples = _samples(answer.text)
        room = await room_log(env["TOMCHAT_DATABASE_URL"], "counted")
        # The start-up put the demo's two characters in the library: one event each.
        library = [
            *await room_log(env["TOMCHAT_DATABASE_URL"], "character:tom"),
            *await room_log(env["TOMCHAT_DATABASE_URL"], "character:mia"),
        ]
        assert [e.type for e in library] == ["character.created"] * 2
        log = room + library
        chunks = [e for e in log if isinstance(e.event, ReplyChunk)]
        assert samples[("tomchat_events_appended_total", ())] == len(log)
        assert samples[("tomchat_group_commit_events_sum", ())] == len(log)
        assert 1 <= samples[("tomchat_group_commit_events_count", ())] <= len(log)
        assert samples[("tomchat_connected_sockets", ())] == 1
        assert samples[("tomchat_rooms_streaming", ())] == 0
        assert samples[("tomchat_catch_up_events_count", ())] == 1  # one join
        assert samples[("tomchat_llm_first_token_seconds_count", ())] == 1
        assert samples[("tomchat_chunk_delivery_lag_seconds_count", ())] == len(chunks)
        assert samples[("tomchat_errors_total", (("code", "bad_request"),))] == 1
        await ann.disconnect()
        async with httpx.AsyncClient() as http:
            after = _samples((await http.get(f"{server.url}/metrics")).text)
        assert after[("tomchat_connected_sockets", ())] == 0
    finally:
        server.stop()


async def test_json_logs_are_one_object_per_line(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "TOMCHAT_LOG_FORMAT": "json", "TOMCHAT_DEMO_DELAY_MS": "5"}
    [server] = await start_servers(env, tmp_path, ["json"])
    try:
        ann = RoomClient(server.url, "logged", "ann")
        await ann.connect()
        await ann.join()
        await ann.send("hello")
        await ann.wait_for(lambda c: sum(x.status == "complete" for x in c.lines.values()) == 3)
        [*_, reply] = [x.id for x in ann.lines.values() if x.is_ai]  # after the greeting
        await ann.disconnect()
        assert await server.terminate() in (0, -15)
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.output().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines), lines
    assert any(line["message"].startswith("tomchat serving on http://") for line in lines)
    ended = [line for line in lines if line["message"].startswith("reply ")]
    assert {(x["room_id"], x["message"].split()[3]) for x in ended} == {("logged", "complete")}
    assert reply in {x["message_id"] for x in ended}


async def test_readiness_is_503_when_the_schema_is_behind(
    env: dict[str, str], tmp_path: Path
) -> None:
    [server] = await start_servers(env, tmp_path, ["single"])
    try:
        import sqlite3

        db = sqlite3.connect(tmp_path / "tomchat.db")
        with db:
            db.execute("UPDATE alembic_version SET version_num = '0001'")
        db.close()
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"{server.url}/api/ready")
            health = await http.get(f"{server.url}/api/health")
        assert answer.status_code == 503
        assert answer.json()["migrations"] == "behind"
        assert answer.json()["ready"] is False
        assert health.status_code == 200  # alive, just not ready
    finally:
        server.stop()

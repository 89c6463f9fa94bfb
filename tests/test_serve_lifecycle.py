"""A single ``tomchat serve`` on SQLite stopping mid-reply: by SIGTERM, and by ``kill -9``
followed by a restart. Nothing acknowledged is lost either way."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.room_client import RoomClient
from tests.support.room_log import room_log
from tests.support.servers import TOMCHAT, start_servers
from tomchat.domain.events import RecordedEvent, ReplyChunk, ReplyCompleted

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


def reply_text(log: list[RecordedEvent], message_id: str) -> str:
    return "".join(
        e.event.text
        for e in log
        if isinstance(e.event, ReplyChunk) and e.event.message_id == message_id
    )


async def streaming_reply(ann: RoomClient) -> str:
    def found(c: RoomClient) -> bool:
        return any(
            x.is_ai and x.status == "streaming" and len(x.content) > 15 for x in c.lines.values()
        )

    await ann.wait_for(found)
    return next(x.id for x in ann.lines.values() if x.is_ai and x.status == "streaming")


async def test_sigterm_mid_reply_closes_it_as_interrupted(
    env: dict[str, str], tmp_path: Path
) -> None:
    [server] = await start_servers(env, tmp_path, ["single"])
    try:
        ann = RoomClient(server.url, "calm", "ann")
        await ann.connect()
        await ann.join()
        await ann.send("Tell me a long story about the northern lights")
        reply = await streaming_reply(ann)
        status = await server.terminate()
        assert status in (0, -15), server.output()
        assert "Application shutdown complete" in server.output(), server.output()
        assert "Traceback" not in server.output(), server.output()
    finally:
        server.stop()
    log = await room_log(env["TOMCHAT_DATABASE_URL"], "calm")
    assert [e.version for e in log] == list(range(1, len(log) + 1))
    [closed] = [
        e.event for e in log if isinstance(e.event, ReplyCompleted) and e.event.message_id == reply
    ]
    assert closed.status == "interrupted"
    assert closed.content == reply_text(log, reply)
    assert closed.content.startswith(ann.text_of(reply)[:15])
    assert log[-1].event == closed, "the close is the last thing written"


async def test_kill_9_mid_reply_then_restart_closes_it_at_start_up(
    env: dict[str, str], tmp_path: Path
) -> None:
    [first] = await start_servers(env, tmp_path, ["first"])
    try:
        ann = RoomClient(first.url, "crash", "ann")
        await ann.connect()
        await ann.join()
        await ann.send("Give me a very long speech about mountains")
        reply = await streaming_reply(ann)
        first.kill()
    finally:
        first.stop()
    await ann.disconnect()
    left = await room_log(env["TOMCHAT_DATABASE_URL"], "crash")
    assert not any(
        isinstance(e.event, ReplyCompleted) and e.event.message_id == reply for e in left
    )
    written = reply_text(left, reply)
    assert written.startswith(ann.text_of(reply))

    # The lease of the dead process is still running, but its pid is gone: at start-up the
    # new process closes the reply at once rather than after the lease.
    started = time.monotonic()
    [second] = await start_servers(env, tmp_path, ["second"])
    try:
        while True:
            log = await room_log(env["TOMCHAT_DATABASE_URL"], "crash")
            if isinstance(log[-1].event, ReplyCompleted):
                break
            assert time.monotonic() - started < 8, second.output()
            await asyncio.sleep(0.05)
        assert time.monotonic() - started < 8
        closed = log[-1].event
        assert closed.message_id == reply and closed.status == "interrupted"
        assert closed.content == written
        assert log[: len(left)] == left, "everything committed before the crash is still there"
        # Ann comes back with her cursor and continues without a hole.
        ann.url = second.url
        left_at = ann.version
        ack = await ann.reconnect()
        assert [e["version"] for e in ack["events"]] == list(range(left_at + 1, ack["version"] + 1))
        await ann.wait_for(lambda c: c.status_of(reply) == "interrupted")
        assert ann.applied == list(range(ann.applied[0], ann.version + 1))
        assert ann.text_of(reply) == written
        await ann.disconnect()
    finally:
        second.stop()


def test_workers_need_redis(env: dict[str, str]) -> None:
    done = subprocess.run(
        [*TOMCHAT, "serve", "--workers", "3"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "tomchat: --workers 3 needs TOMCHAT_REDIS_URL: the processes reach each other's "
        "sockets through Redis"
    )


def test_lease_seconds_must_be_a_number(env: dict[str, str]) -> None:
    done = subprocess.run(
        [*TOMCHAT, "db", "upgrade"],
        env={**os.environ, **env, "TOMCHAT_REPLY_LEASE_SECONDS": "soon"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "TOMCHAT_REPLY_LEASE_SECONDS must be a number of seconds" in done.stderr


def test_unreachable_redis_is_one_clear_line(env: dict[str, str]) -> None:
    done = subprocess.run(
        [*TOMCHAT, "serve", "--port", "0"],
        env={**os.environ, **env, "TOMCHAT_REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("tomchat: cannot reach Redis at redis://:***@127.0.0.1:1/0: "), line
    assert "hunter2" not in done.stderr

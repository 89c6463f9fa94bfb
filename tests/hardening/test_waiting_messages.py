"""No message waits forever: a process that dies after committing a user message and before
taking the room's lease leaves the message unanswered, and the watchdog (or the next start)
must find it. The dying process is real: it commits the message and SIGKILLs itself."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import serve
from tests.support.polling import eventually
from tests.support.settings import make_settings
from tomchat.domain.events import MessagePosted, ReplyCompleted, ReplyStarted
from tomchat.store.database import Database
from tomchat.store.event_store import read_events
from tomchat.store.migrate import upgrade_async

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


def post_and_die(url: str, room_id: str, message_id: str, text: str) -> None:
    """Commit ``text`` as a user message from another process, which then dies (SIGKILL)."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.orphan_poster", url, room_id, message_id, text],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == -9 and "COMMITTED" in done.stdout, (done.returncode, done.stderr)


async def answers_to(url: str, room_id: str, message_id: str) -> list[str]:
    """The replies whose ``reply.started`` names ``message_id``, completed ones only."""
    db = Database(url)
    try:
        async with db.snapshot() as conn:
            log = await read_events(conn, room_id)
    finally:
        await db.dispose()
    started = [
        e.event.message_id
        for e in log
        if isinstance(e.event, ReplyStarted) and message_id in e.event.in_reply_to
    ]
    completed = {e.event.message_id for e in log if isinstance(e.event, ReplyCompleted)}
    return [reply for reply in started if reply in completed]


async def test_a_message_left_by_a_dead_process_is_answered_at_start_up(tmp_path: Path) -> None:
    """One SQLite process: the message is committed while no server runs (its poster died
    before any lease); the server answers it as it starts."""
    settings = make_settings(tmp_path, demo_delay_ms=5)
    url = settings.database_url
    async with serve(settings) as server, httpx.AsyncClient() as http:
        answer = await http.post(f"{server.url}/api/rooms", json={"id": "quiet", "name": "Quiet"})
        assert answer.status_code == 201
    post_and_die(url, "quiet", "m-orphan", "Is anyone there?")
    assert await answers_to(url, "quiet", "m-orphan") == []
    started = time.monotonic()
    async with serve(settings):
        await eventually(lambda: answers_to(url, "quiet", "m-orphan"), timeout=20, what="an answer")
        print(f"\nanswered {time.monotonic() - started:.2f} s after the restart began")
    [reply] = await answers_to(url, "quiet", "m-orphan")
    assert reply


async def test_the_watchdog_answers_a_message_left_while_it_runs(tmp_path: Path) -> None:
    """The server runs; another process sharing its database commits a message and dies
    before taking the lease. The watchdog finds the room within a second or so."""
    settings = make_settings(tmp_path, demo_delay_ms=5, reply_lease_seconds=2.0)
    url = settings.database_url
    async with serve(settings) as server, httpx.AsyncClient() as http:
        answer = await http.post(f"{server.url}/api/rooms", json={"id": "lobby", "name": "L"})
        assert answer.status_code == 201
        await asyncio.to_thread(post_and_die, url, "lobby", "m-left", "Hello?")
        left = time.monotonic()
        await eventually(lambda: answers_to(url, "lobby", "m-left"), timeout=15, what="answer")
        print(f"\nanswered {time.monotonic() - left:.2f} s after the poster died")
        assert len(await answers_to(url, "lobby", "m-left")) == 1


async def test_unattended_rooms_are_the_waiting_ones_nobody_holds(sqlite_url: str) -> None:
    from dataclasses import replace

    from tomchat.cluster.bus import ProcessIdentity
    from tomchat.store.event_store import EventStore
    from tomchat.store.leases import ReplyLeases
    from tomchat.store.rooms import RoomReader

    await upgrade_async(sqlite_url)
    db = Database(sqlite_url)
    store = EventStore(db)
    try:

        def said(message_id: str) -> MessagePosted:
            return MessagePosted(message_id=message_id, username="ann", content="hi")

        await store.append("answered", [said("a1"), ReplyStarted(message_id="r1", character="T")])
        await store.append(
            "answered", [ReplyCompleted(message_id="r1", content="yo", status="complete")]
        )
        await store.append("waiting", [ReplyStarted(message_id="r2", character="T")])
        await store.append("waiting", [said("w1")])
        await store.append("streaming", [said("s1"), ReplyStarted(message_id="r3", character="T")])
        await store.append("held", [said("h1")])
        await store.append("expired", [said("e1")])
        me = ProcessIdentity.current()
        other = ReplyLeases(db, replace(me, owner=f"other:{me.owner}"), 30)
        brief = ReplyLeases(db, replace(me, owner=f"brief:{me.owner}"), 0.1)
        assert await other.acquire("held") and await brief.acquire("expired")
        await asyncio.sleep(0.3)
        reader = RoomReader(db)
        assert await reader.unattended() == ["expired", "streaming", "waiting"]
        assert await reader.unattended(within=60) == ["expired", "streaming", "waiting"]
        await asyncio.sleep(1.1)
        assert await reader.unattended(within=1) == [], "written too long ago for a quick look"
        await other.release("held")
        assert await reader.unattended() == ["expired", "held", "streaming", "waiting"]
    finally:
        await store.close()
        await db.dispose()

"""A reply's stored text is exactly the text of its logged chunks, whatever ends it: here
the database kills the server's connections (``pg_terminate_backend``) again and again
while replies stream, so chunk appends and commits fail midway."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import serve
from tests.support.polling import eventually
from tests.support.room_client import RoomClient
from tests.support.settings import make_settings
from tomchat.domain.events import ReplyChunk, ReplyCompleted
from tomchat.domain.transcript import STREAMING
from tomchat.store.database import Database
from tomchat.store.event_store import read_events
from tomchat.store.rooms import RoomReader

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


async def terminate_connections(url: str, until: float) -> int:
    """Kill every other session of the database, over and over, until ``until``."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    killed = 0
    try:
        while time.monotonic() < until:
            killed += await conn.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            await asyncio.sleep(0.015)
    finally:
        await conn.close()
    return killed


async def test_failed_replies_keep_exactly_their_logged_text(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = make_settings(
        tmp_path, database_url=postgres_url, demo_delay_ms=10, reply_lease_seconds=1.0
    )
    async with serve(settings):
        url = f"http://127.0.0.1:{settings.port}"
        ann = RoomClient(url, "cut", "ann")
        await ann.connect()
        await ann.join()
        for round_ in range(3):
            with contextlib.suppress(Exception):
                await ann.send(f"Tell me a long story about storms, part {round_}")
            killed = await terminate_connections(postgres_url, time.monotonic() + 1.5)
            print(f"\nround {round_}: {killed} sessions terminated")
        db = Database(postgres_url)
        reader = RoomReader(db)
        try:
            # Once the database is left alone the room answers again (the watchdog finds the
            # messages left waiting), so at least one answer follows the greeting.
            async def answered() -> bool:
                return len([r for r in await reader.recent("cut", 100) if r.is_ai]) >= 2

            await eventually(answered, timeout=30, what="an answer after the greeting")

            # Replies cut off are closed by their writer or, left streaming, by the watchdog.
            async def settled() -> bool:
                return not [r for r in await reader.recent("cut", 100) if r.status == STREAMING]

            await eventually(settled, timeout=30, what="no reply left streaming")
            async with db.snapshot() as conn:
                log = await read_events(conn, "cut")
        finally:
            await db.dispose()
        await ann.disconnect()
    chunks: dict[str, str] = {}
    for e in log:
        if isinstance(e.event, ReplyChunk):
            chunks[e.event.message_id] = chunks.get(e.event.message_id, "") + e.event.text
    closed = [e.event for e in log if isinstance(e.event, ReplyCompleted)]
    statuses = [c.status for c in closed]
    print(f"replies: {statuses}")
    assert len(closed) >= 2, "the greeting and at least one answer"
    for c in closed:
        if c.message_id in chunks or c.status != "complete":
            assert c.content == chunks.get(c.message_id, ""), (c, chunks.get(c.message_id))
    assert [e.version for e in log] == list(range(1, len(log) + 1))

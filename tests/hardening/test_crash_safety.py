"""Crash safety: ``kill -9`` in the middle of a group commit, several times over.

A writer process appends many concurrent requests (1-5 events each) to a dozen rooms and is
killed: once while it provably sits inside a batch's transaction (its events written, heads
and commit not yet), once at a random moment of full load. After each kill the log must hold
whole requests only, every room's versions must run 1, 2, 3... with its head on the last,
and the ``messages`` projection must equal a rebuild from the log. The next writer then
carries on from the same database.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.hardening.crash_writer import request_size
from tomchat.store.database import Database
from tomchat.store.migrate import upgrade_async
from tomchat.store.rebuild import rebuild_projections
from tomchat.store.schema import events, streams

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]


def start_writer(url: str, first: int, pause: float) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.hardening.crash_writer", url, str(first)]
    if pause:
        command += ["--pause-mid-batch", str(pause)]
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


async def wait_for_line(process: subprocess.Popen[str], wanted: str, timeout: float) -> None:
    assert process.stdout is not None
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        while True:
            line = await loop.run_in_executor(None, process.stdout.readline)
            assert line, f"the writer ended before saying {wanted!r} (exit {process.poll()})"
            if line.strip() == wanted:
                return


def sqlite_write_locked(db_file: Path) -> bool:
    """True while some connection holds the database's write transaction."""
    conn = sqlite3.connect(db_file, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc)
    else:
        conn.execute("ROLLBACK")
        return False
    finally:
        conn.close()


async def postgres_open_transactions(url: str) -> int:
    """Sessions of this database sitting inside a transaction."""
    import asyncpg

    plain = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(plain)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
        )
        return count
    finally:
        await conn.close()


async def check_log(url: str) -> tuple[int, int]:
    """Whole requests only, contiguous versions, heads on the last event, projection equal
    to a rebuild. Returns (requests, highest request index)."""
    db = Database(url)
    try:
        async with db.reader.connect() as conn:
            rows = (
                await conn.execute(
                    select(events.c.room_id, events.c.version, events.c.data).order_by(
                        events.c.room_id, events.c.version
                    )
                )
            ).all()
            heads = dict((await conn.execute(select(streams.c.room_id, streams.c.version))).all())
        per_room: dict[str, list[int]] = {}
        per_request: dict[int, int] = {}
        for room, version, data in rows:
            per_room.setdefault(room, []).append(version)
            message_id = json.loads(data)["message_id"]
            index = int(message_id[1:])
            per_request[index] = per_request.get(index, 0) + 1
        for room, versions in per_room.items():
            assert versions == list(range(1, len(versions) + 1)), f"a hole in {room}"
            assert heads[room] == versions[-1], f"{room}'s head is not its last version"
        torn = {i: n for i, n in per_request.items() if n != request_size(i)}
        assert not torn, f"requests cut in half: {sorted(torn.items())[:5]}"
        report = await rebuild_projections(db, check_only=True)
        assert report.differences == 0
        assert report.rows > 0
        return len(per_request), max(per_request)
    finally:
        await db.dispose()


async def crash_rounds(url: str, db_file: Path | None) -> None:
    await upgrade_async(url)
    first, total = 0, 0
    rounds = [("mid-batch", 0.02), ("random moment", 0.0), ("mid-batch", 0.05)]
    for label, pause in rounds:
        writer = start_writer(url, first, pause)
        try:
            if pause:
                await wait_for_line(writer, "MIDBATCH", timeout=60)
                # Seen from outside: the writer holds an open write transaction right now.
                if db_file is not None:
                    assert sqlite_write_locked(db_file), "the kill lands mid-transaction"
                else:
                    assert await postgres_open_transactions(url) >= 1
            else:
                await wait_for_line(writer, "RUNNING", timeout=60)
                await asyncio.sleep(random.uniform(0.05, 0.6))
            writer.send_signal(signal.SIGKILL)
        finally:
            writer.kill()
            writer.wait(10)
        assert writer.returncode == -signal.SIGKILL, label
        requests, highest = await check_log(url)
        assert requests > total, f"the writer made progress before the {label} kill"
        total, first = requests, highest + 1000  # new indices: never a retry of a torn one


async def test_kill_9_mid_batch_on_sqlite(tmp_path: Path) -> None:
    db_file = tmp_path / "crash.db"
    await crash_rounds(f"sqlite+aiosqlite:///{db_file}", db_file)


async def test_kill_9_mid_batch_on_postgresql(postgres_url: str) -> None:
    await crash_rounds(postgres_url, None)

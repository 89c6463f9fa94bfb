"""A full disk or a read-only database: writers get ``unavailable`` with a message that says
why, readers keep reading, nothing half-written is left, and writing resumes by itself once
the disk has room (or is writable) again.

The full disk is real: SQLite on a small tmpfs of its own, filled up (mounting needs root,
which the test machines give). Read-only is SQLite's own answer on the server's write
connection (``PRAGMA query_only``), and PostgreSQL's (``default_transaction_read_only``).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio

from tests.conftest import RunningServer, start_server
from tests.hardening.conftest import GENEROUS, call, connect
from tests.support.settings import make_settings
from tomchat.store.database import Database
from tomchat.store.rebuild import rebuild_projections
from tomchat.store.recorders import SqliteRecorder
from tomchat.store.schema import events

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk``; returns the file holding them."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as handle:
        for block in (65536, 512):  # then the last partial blocks
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * block)
    return filler


def writer_query_only(server: RunningServer, on: bool) -> None:
    """Make the store's one SQLite write connection read-only, or writable again.

    A real read-only remount is refused while SQLite holds its files open for writing, and
    root ignores file modes; ``PRAGMA query_only`` gives the same answer from SQLite
    ("attempt to write a readonly database") on the connection the server writes with.
    """
    recorder = server.services.store.recorder
    assert isinstance(recorder, SqliteRecorder)
    writer = recorder._writer  # the SQLite writer thread's engine (started by a first write)
    assert writer is not None
    connection = writer.engine.raw_connection()  # StaticPool: the very same connection
    connection.driver_connection.execute(f"PRAGMA query_only = {int(on)}")


async def write_until_refused(sio: socketio.AsyncClient, room: str) -> dict[str, Any]:
    """Messages until the store refuses one (SQLite has some room left in its pages)."""
    for i in range(400):
        ack = await call(sio, "sendMessage", {"roomId": room, "content": f"{i} " + "z" * 3900})
        if not ack["ok"]:
            return ack  # type: ignore[no-any-return]
    raise AssertionError("the full disk never refused a write")


async def consistent(url: str) -> None:
    db = Database(url)
    try:
        async with db.reader.connect() as conn:
            rows = (await conn.execute(events.select().order_by(events.c.position))).all()
        by_room: dict[str, list[int]] = {}
        for row in rows:
            by_room.setdefault(row.room_id, []).append(row.version)
        for versions in by_room.values():
            assert versions == list(range(1, len(versions) + 1))
        assert (await rebuild_projections(db, check_only=True)).differences == 0
    finally:
        await db.dispose()


async def test_full_disk_then_room_again(small_disk: Path) -> None:
    settings = make_settings(small_disk, demo_delay_ms=0, live_limits=GENEROUS)
    server, stop = await start_server(settings)
    try:
        sio = await connect(server)
        assert (await call(sio, "joinRoom", {"roomId": "full", "username": "ann"}))["ok"]
        filler = fill(small_disk)

        refused = await write_until_refused(sio, "full")
        assert refused["error"]["code"] == "unavailable", refused
        assert "disk is full" in refused["error"]["message"]
        async with httpx.AsyncClient(base_url=server.url) as http:
            made = await http.post("/api/rooms", json={"name": "More"})
            assert made.status_code == 503, made.text
            assert made.headers["content-type"] == "application/problem+json"
            assert "disk is full" in made.json()["detail"]
            # Readers are not writers: the room still reads, and joins it.
            assert (await http.get("/api/rooms/full/messages")).status_code == 200
        assert (await call(sio, "joinRoom", {"roomId": "full", "username": "ann"}))["ok"]

        filler.unlink()  # room again: no restart, no operator action on tomchat
        again = await call(sio, "sendMessage", {"roomId": "full", "content": "and we're back"})
        assert again["ok"], again
        await sio.disconnect()
    finally:
        await stop()
    await consistent(settings.database_url)


async def test_read_only_sqlite_then_writable_again(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, demo_delay_ms=0, live_limits=GENEROUS)
    server, stop = await start_server(settings)
    try:
        sio = await connect(server)
        assert (await call(sio, "joinRoom", {"roomId": "ro", "username": "ann"}))["ok"]
        await call(sio, "sendMessage", {"roomId": "ro", "content": "before"})
        await asyncio.sleep(0.3)  # the demo's reply goes in while it still can
        writer_query_only(server, True)
        try:
            refused = await call(sio, "sendMessage", {"roomId": "ro", "content": "hello?"})
            assert refused["error"]["code"] == "unavailable", refused
            assert "read-only" in refused["error"]["message"]
            async with httpx.AsyncClient(base_url=server.url) as http:
                made = await http.post("/api/rooms", json={"name": "More"})
                assert made.status_code == 503 and "read-only" in made.json()["detail"]
                assert (await http.get("/api/rooms/ro/events")).status_code == 200
        finally:
            writer_query_only(server, False)
        again = await call(sio, "sendMessage", {"roomId": "ro", "content": "writable again"})
        assert again["ok"], again
        await sio.disconnect()
    finally:
        await stop()
    await consistent(settings.database_url)


async def test_read_only_postgresql_then_writable_again(postgres_url: str, tmp_path: Path) -> None:
    import asyncpg

    plain = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    name = plain.rsplit("/", 1)[1]

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(plain.rsplit("/", 1)[0] + "/postgres")
        try:
            await conn.execute(sql)
            # Sessions pick the setting up when they start: end the server's.
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()

    settings = make_settings(
        tmp_path, database_url=postgres_url, demo_delay_ms=0, live_limits=GENEROUS
    )
    server, stop = await start_server(settings)
    try:
        sio = await connect(server)
        assert (await call(sio, "joinRoom", {"roomId": "pg-ro", "username": "ann"}))["ok"]
        await admin(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        refused = await send_until(server, sio, ok=False)
        assert refused["error"]["code"] == "unavailable", refused
        assert "read-only" in refused["error"]["message"]
        await admin(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        again = await send_until(server, sio, ok=True)
        assert again["ok"]
        await sio.disconnect()
    finally:
        await stop()
    await consistent(postgres_url)


async def send_until(server: RunningServer, sio: socketio.AsyncClient, *, ok: bool) -> Any:
    """The pool's connections are replaced as they fail: a few tries may see old ones."""
    ack: Any = None
    for i in range(20):
        ack = await call(sio, "sendMessage", {"roomId": "pg-ro", "content": f"try {i}"})
        if ack["ok"] is ok:
            return ack
    return ack

"""``TOMCHAT_SQLITE_SYNC``: SQLite's commit durability, ``full`` by default, ``normal`` on
request; every connection tomchat opens to the file (the event store's writer thread, the
async writer and the readers) is set the same way, and the events are in the file either way."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tomchat.domain.errors import ConfigError
from tomchat.domain.events import MessagePosted
from tomchat.settings import Settings
from tomchat.store.database import Database
from tomchat.store.event_store import EventStore
from tomchat.store.migrate import upgrade_async
from tomchat.store.recorders.base import SessionSettings
from tomchat.store.recorders.sqlite import SqliteRecorder

# SQLite's numbers for the ``synchronous`` pragma.
NORMAL, FULL = 1, 2


def test_the_setting_is_read_and_checked() -> None:
    assert Settings.from_env({}).session_settings.sqlite_synchronous == "FULL"
    normal = Settings.from_env({"TOMCHAT_SQLITE_SYNC": "Normal"})
    assert normal.sqlite_sync == "normal"
    assert normal.session_settings.sqlite_synchronous == "NORMAL"
    with pytest.raises(ConfigError, match="TOMCHAT_SQLITE_SYNC must be full or normal"):
        Settings.from_env({"TOMCHAT_SQLITE_SYNC": "off"})


@pytest.mark.parametrize(("chosen", "pragma"), [("FULL", FULL), ("NORMAL", NORMAL)])
async def test_every_connection_commits_as_chosen(tmp_path: Path, chosen: str, pragma: int) -> None:
    path = tmp_path / "sync.db"
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_async(url)
    db = Database(url, SessionSettings(sqlite_synchronous=chosen))  # type: ignore[arg-type]
    store = EventStore(db)
    try:
        for n in range(3):
            await store.append(
                "r", [MessagePosted(message_id=f"m{n}", username="ann", content=f"hello {n}")]
            )
        recorder = db.recorder
        assert isinstance(recorder, SqliteRecorder) and recorder._writer is not None
        # The event store's own writer thread, where the log's commits happen.
        seen = await recorder._writer.run(
            lambda tx: tx.raw.execute("PRAGMA synchronous").fetchone()[0]
        )
        assert seen == pragma
        for engine in (db.recorder.writer, db.reader):
            async with engine.connect() as conn:
                assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == pragma
    finally:
        await store.close()
        await db.dispose()
    with sqlite3.connect(path) as check:
        rows = check.execute("SELECT version FROM events WHERE room_id = 'r'").fetchall()
    assert [v for (v,) in rows] == [1, 2, 3]

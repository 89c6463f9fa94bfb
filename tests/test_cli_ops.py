"""Operator commands as an operator runs them: ``rooms delete``, ``backup``, ``doctor``, real
processes against real SQLite files and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from tests.conftest import REDIS_URL
from tests.fakes.llm import FakeLLM, json_reply
from tomchat.domain.events import (
    MessagePosted,
    ReplyAudio,
    ReplyCompleted,
    ReplyStarted,
    RoomCreated,
)
from tomchat.store.database import Database
from tomchat.store.event_store import EventStore
from tomchat.store.migrate import upgrade_async
from tomchat.store.schema import events, messages, reply_leases, room_access, streams

pytestmark = pytest.mark.timeout(90)

TOMCHAT = [sys.executable, "-m", "tomchat.cli"]


def run(
    args: list[str], env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TOMCHAT_", "FISH_"))}
    return subprocess.run(
        [*TOMCHAT, *args],
        env={**base, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def fill_room(store: EventStore, media: Path, room: str) -> Path:
    """A room with a conversation, a voice reply whose file is on disk, an invite token and a
    reply lease: everything that names a room."""
    audio = media / f"{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}.mp3"
    audio.write_bytes(b"\xff\xfb\x90\xc0" + bytes(413))
    await store.append(room, [RoomCreated(name=room, character="Tom")])
    await store.append(room, [MessagePosted(message_id=f"{room}-m", username="ann", content="hi")])
    reply = f"{room}-r"
    await store.append(
        room,
        [
            ReplyStarted(message_id=reply, character="Tom"),
            ReplyAudio(message_id=reply, audio_url=f"/media/{audio.name}", bytes=417),
            ReplyCompleted(message_id=reply, content="Hello", status="complete"),
        ],
    )
    now = datetime.now(UTC)
    async with store.db.writer.begin() as conn:
        await conn.execute(
            insert(room_access).values(room_id=room, token_hash="0" * 64, created_at=now)
        )
        await conn.execute(insert(reply_leases).values(room_id=room, owner=None))
    return audio


async def counts(url: str, room: str) -> dict[str, int]:
    db = Database(url)
    try:
        async with db.reader.connect() as conn:
            return {
                t.name: int(
                    (
                        await conn.execute(select(func.count()).where(t.c.room_id == room))
                    ).scalar_one()
                )
                for t in (events, messages, streams, room_access, reply_leases)
            }
    finally:
        await db.dispose()


def env_for(url: str, tmp_path: Path) -> dict[str, str]:
    return {"TOMCHAT_DATABASE_URL": url, "TOMCHAT_MEDIA_DIR": str(tmp_path / "media")}


def table(stdout: str) -> dict[str, tuple[str, str]]:
    """``doctor``'s table: check -> (status, detail); columns are two or more spaces apart."""
    lines = stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["CHECK", "STATUS", "DETAIL"]
    rows = [re.split(r"\s{2,}", line, maxsplit=2) for line in lines[1:]]
    return {name: (status, detail) for name, status, detail in rows}


async def prepared(url: str, media: Path) -> tuple[Path, Path]:
    await asyncio.to_thread(media.mkdir, parents=True, exist_ok=True)
    await upgrade_async(url)
    db = Database(url)
    store = EventStore(db)
    store.start()
    try:
        gone = await fill_room(store, media, "doomed")
        kept = await fill_room(store, media, "kept")
    finally:
        await store.close()
        await db.dispose()
    return gone, kept


def test_rooms_delete_removes_everything_that_names_the_room(
    database_url: str, tmp_path: Path
) -> None:
    gone, kept = asyncio.run(prepared(database_url, tmp_path / "media"))
    env = env_for(database_url, tmp_path)
    before_kept = asyncio.run(counts(database_url, "kept"))
    assert (
        asyncio.run(counts(database_url, "doomed"))
        == before_kept
        == {
            "events": 5,
            "messages": 2,
            "streams": 1,
            "room_access": 1,
            "reply_leases": 1,
        }
    )

    # No terminal to ask on and no --yes: nothing happens.
    refused = run(["rooms", "delete", "doomed"], env)
    assert refused.returncode == 2 and "--yes" in refused.stderr, refused.stderr
    assert asyncio.run(counts(database_url, "doomed"))["events"] == 5

    done = run(["rooms", "delete", "doomed", "--yes"], env)
    assert done.returncode == 0, done.stderr
    assert "deleted room doomed: 5 events" in done.stdout and "1 audio files" in done.stdout
    assert set(asyncio.run(counts(database_url, "doomed")).values()) == {0}
    assert not gone.exists()
    # The other room is untouched: rows, file, and the listing.
    assert asyncio.run(counts(database_url, "kept")) == before_kept
    assert kept.read_bytes()[:2] == b"\xff\xfb"
    listing = run(["rooms"], env)
    assert "kept" in listing.stdout and "doomed" not in listing.stdout

    again = run(["rooms", "delete", "doomed", "--yes"], env)
    assert again.returncode == 2 and "no room 'doomed'" in again.stderr


def test_rooms_delete_help_says_it_is_the_one_way_the_log_forgets() -> None:
    shown = run(["rooms", "delete", "--help"], {})
    assert shown.returncode == 0
    assert "the one way the log" in shown.stdout and "no undo" in shown.stdout


def test_sqlite_backup_is_a_consistent_copy(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'live.db'}"
    asyncio.run(prepared(url, tmp_path / "media"))
    env = env_for(url, tmp_path)
    target = tmp_path / "copy.db"
    done = run(["backup", str(target)], env)
    assert done.returncode == 0, done.stderr
    assert "backed up" in done.stdout and not (tmp_path / "copy.db.part").exists()
    copy = sqlite3.connect(target)
    try:
        rows = copy.execute(
            "select room_id, version, type from events order by position"
        ).fetchall()
        assert copy.execute("pragma integrity_check").fetchone() == ("ok",)
    finally:
        copy.close()
    original = sqlite3.connect(tmp_path / "live.db")
    try:
        assert (
            rows
            == original.execute(
                "select room_id, version, type from events order by position"
            ).fetchall()
        )
    finally:
        original.close()
    assert len(rows) == 10
    # The copy serves: the CLI reads it like any database.
    listing = run(["rooms"], {**env, "TOMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{target}"})
    assert "doomed" in listing.stdout and "kept" in listing.stdout

    exists = run(["backup", str(target)], env)
    assert exists.returncode == 2 and "--force" in exists.stderr
    assert run(["backup", str(target), "--force"], env).returncode == 0


@pytest.mark.postgres
def test_postgres_backup_prints_a_pg_dump_line_that_works(
    postgres_url: str, tmp_path: Path
) -> None:
    asyncio.run(prepared(postgres_url, tmp_path / "media"))
    target = tmp_path / "dump.pgc"
    done = run(["backup", str(target)], env_for(postgres_url, tmp_path))
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith("pg_dump --format=custom") and "asyncpg" not in line
    assert not target.exists()  # printed, not run
    dumped = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=60)
    assert dumped.returncode == 0, dumped.stderr
    listed = subprocess.run(
        ["pg_restore", "--list", str(target)], capture_output=True, text=True, timeout=60
    )
    assert "TABLE DATA public events" in listed.stdout


def test_doctor_reports_every_check_in_one_table(database_url: str, tmp_path: Path) -> None:
    asyncio.run(prepared(database_url, tmp_path / "media"))
    with FakeLLM() as llm:
        llm.script(json_reply({"object": "list", "data": [{"id": "tom-model"}]}))
        env = {
            **env_for(database_url, tmp_path),
            "TOMCHAT_REDIS_URL": REDIS_URL,
            "TOMCHAT_LLM": "openai",
            "TOMCHAT_LLM_BASE_URL": llm.url,
        }
        done = run(["doctor"], env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert [r.path for r in llm.requests] == ["/models"]
    rows = table(done.stdout)
    assert list(rows)[:6] == [
        "database",
        "migrations",
        "redis",
        "llm (openai)",
        "tts (none)",
        "asr (none)",
    ]
    assert rows["database"][0] == "ok" and "reachable" in rows["database"][1]
    assert rows["migrations"][0] == "ok"
    assert rows["redis"] == ("ok", "127.0.0.1:6379 answers")
    assert rows["llm (openai)"][0] == "ok" and "/models: HTTP 200" in rows["llm (openai)"][1]
    assert rows["tts (none)"][0] == rows["asr (none)"][0] == "off"
    assert rows["disk (media)"][0] in ("ok", "warn") and "GB free" in rows["disk (media)"][1]
    if "sqlite" in database_url:
        assert "disk (database)" in rows


def test_doctor_fails_loudly_on_what_is_wrong(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # a database no migration has run on
    with FakeLLM() as llm:
        llm.script(json_reply({"error": {"message": "bad key"}}, status=401))
        done = run(
            ["doctor"],
            {
                "TOMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{empty}",
                "TOMCHAT_MEDIA_DIR": str(tmp_path / "media"),
                "TOMCHAT_REDIS_URL": "redis://127.0.0.1:1/0",
                "TOMCHAT_LLM": "openai",
                "TOMCHAT_LLM_BASE_URL": llm.url,
                "TOMCHAT_TTS": "fish",
            },
        )
    assert done.returncode == 2
    rows = table(done.stdout)
    assert rows["database"][0] == "ok"
    assert rows["migrations"][0] == "FAIL" and "tomchat db upgrade" in rows["migrations"][1]
    assert rows["redis"][0] == "FAIL"
    assert rows["llm (openai)"][0] == "FAIL" and "key is refused" in rows["llm (openai)"][1]
    assert rows["tts (fish)"] == ("FAIL", "FISH_API_KEY is not set")
    assert "check(s) failed: migrations, redis, llm (openai), tts (fish)" in done.stderr

"""``tomchat rooms``, ``tomchat export`` and ``tomchat replay`` as a person runs them."""

from __future__ import annotations

import asyncio
import json
import os
import select
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.support.sessions import BOOK_CLUB, T0, record
from tests.test_transcripts import JSON_HEAD, MESSAGES, TEXT, markdown
from tomchat.domain.events import Event, ReplyChunk, ReplyCompleted, ReplyStarted, RoomCreated
from tomchat.domain.pacing import pauses
from tomchat.store.database import Database
from tomchat.store.event_store import EventStore
from tomchat.store.migrate import upgrade_async

pytestmark = pytest.mark.timeout(90)

TOMCHAT = [sys.executable, "-m", "tomchat.cli"]


def recorded_db(tmp_path: Path, session: list[tuple[float, list[Event]]] = BOOK_CLUB) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"

    async def build() -> None:
        await upgrade_async(url)
        db = Database(url)
        store = EventStore(db)
        await record(store, "books", session)
        await store.close()
        await db.dispose()

    asyncio.run(build())
    return url


def run(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TOMCHAT, *args],
        env={**os.environ, "TOMCHAT_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line_error(done: subprocess.CompletedProcess[str], says: str) -> None:
    assert done.returncode == 2, done
    assert done.stderr.strip() == f"tomchat: {says}", done.stderr


def test_rooms_lists_every_room(tmp_path: Path) -> None:
    url = recorded_db(tmp_path)
    db = url.removeprefix("sqlite+aiosqlite:///")
    [(updated,)] = sqlite3.connect(db).execute("select updated_at from streams").fetchall()
    done = run(url, "rooms")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "ROOM   NAME         MESSAGES  EVENTS  LAST ACTIVITY (UTC)",
        f"books  Book *club*         7      16  {updated[:19]}",
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    fresh = recorded_db(empty, [])
    assert run(fresh, "rooms").stdout == "no rooms yet\n"


def test_export_writes_each_format_to_a_file(tmp_path: Path) -> None:
    url = recorded_db(tmp_path)
    for fmt in ("json", "jsonl", "markdown", "text"):
        target = tmp_path / f"out.{fmt}"
        done = run(url, "export", "books", "--format", fmt, "-o", str(target))
        assert done.returncode == 0, done.stderr
        assert done.stderr == f"exported 7 messages of books to {target}\n"
        assert not (tmp_path / f"out.{fmt}.part").exists()
        body = target.read_text()
        if fmt == "json":
            assert json.loads(body) == {**JSON_HEAD, "messages": MESSAGES}
        elif fmt == "jsonl":
            assert [json.loads(line) for line in body.splitlines()] == MESSAGES
        elif fmt == "markdown":
            assert body == markdown("")  # no server to point at: links as stored
        else:
            assert body == TEXT
    # Markdown is the default, stdout the default target; --base-url makes links absolute.
    to_stdout = run(url, "export", "books", "--base-url", "https://chat.example/")
    assert to_stdout.returncode == 0 and to_stdout.stdout == markdown("https://chat.example")
    assert to_stdout.stderr == ""
    excerpt = run(url, "export", "books", "--format", "text", "--from", "10", "--to", "13")
    assert excerpt.stdout == "".join(TEXT.splitlines(keepends=True)[5:8])


def test_export_progress_bar(tmp_path: Path) -> None:
    url = recorded_db(tmp_path)
    target = tmp_path / "t.md"
    # Bytes, not text: text mode would turn the bar's carriage returns into newlines.
    done = subprocess.run(
        [*TOMCHAT, "export", "books", "-o", str(target), "--progress"],
        env={**os.environ, "TOMCHAT_DATABASE_URL": url},
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    bar, summary, end = done.stderr.decode().split("\n")
    assert bar.startswith("\r") and bar.split("\r")[-1] == (
        "[##############################] 100%  7/7 messages"
    )
    assert (summary, end) == (f"exported 7 messages of books to {target}", "")
    # Not a terminal: no bar unless asked for.
    quiet = run(url, "export", "books", "-o", str(tmp_path / "q.md"))
    assert "#" not in quiet.stderr


def test_export_and_replay_errors_are_one_line(tmp_path: Path) -> None:
    url = recorded_db(tmp_path)
    one_line_error(run(url, "export", "nobody"), "no room 'nobody'")
    one_line_error(
        run(url, "export", "books", "--from", "yesterday"),
        "--from must be a room version (a whole number) or an ISO 8601 time, not 'yesterday'",
    )
    one_line_error(
        run(url, "export", "books", "-o", str(tmp_path / "no" / "such" / "x.md")),
        f"cannot write {tmp_path / 'no' / 'such' / 'x.md'}: no folder {tmp_path / 'no' / 'such'}",
    )
    missing = tmp_path / "missing.db"
    one_line_error(
        run(f"sqlite+aiosqlite:///{missing}", "rooms"),
        f"no database at {missing} (set TOMCHAT_DATABASE_URL)",
    )
    assert not missing.exists()
    one_line_error(run(url, "replay", "nobody"), "no room 'nobody'")
    one_line_error(
        run(url, "replay", "books", "--speed", "-2"),
        "--speed must be above 0 and at most 1000, not -2",
    )
    one_line_error(
        run(url, "replay", "books", "--max-pause", "-1"),
        "--max-pause must be 0 to 3600 seconds, not -1",
    )
    bad_format = run(url, "export", "books", "--format", "pdf")
    assert bad_format.returncode == 2 and "invalid choice: 'pdf'" in bad_format.stderr


def test_replay_prints_the_conversation_paced(tmp_path: Path) -> None:
    url = recorded_db(tmp_path)
    started = time.monotonic()
    done = run(url, "replay", "books", "--speed", "10", "--max-pause", "0.3")
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "[09:26:53] room 'Book *club*' opened with Tom\n"
        "[09:26:53] Tom: Hello, I'm Tom.\n"
        "[09:26:55] ann_b: Hello Tom\n"
        "\n"
        "    How are *you*?\n"
        "[09:26:55] Tom: I am fine.\n"
        "[09:27:03] bob (voice): Tell me about whales\n"
        "[09:27:04] Tom: Whales are\n"
        "[09:27:04] ann_b: stop\n"
        "    Tom … [stopped]\n"
        "[09:26:53] Tom: [failed]\n"
    )
    times = [T0 + timedelta(seconds=offset) for offset, events in BOOK_CLUB for _ in events]
    assert took >= sum(pauses(times, 10, 0.3)) - 0.05  # about 1.2 s of pauses


def test_replay_types_a_reply_chunk_by_chunk(tmp_path: Path) -> None:
    session: list[tuple[float, list[Event]]] = [
        (
            0,
            [
                RoomCreated(name="Typing", character="Tom"),
                ReplyStarted(message_id="r", character="Tom"),
            ],
        ),
        (0.6, [ReplyChunk(message_id="r", index=0, text="one ")]),
        (1.2, [ReplyChunk(message_id="r", index=1, text="two\nthree")]),
        (1.8, [ReplyCompleted(message_id="r", content="one two\nthree", status="complete")]),
    ]
    url = recorded_db(tmp_path, session)
    proc = subprocess.Popen(
        [*TOMCHAT, "replay", "books", "--speed", "2"],
        env={**os.environ, "TOMCHAT_DATABASE_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    seen: list[tuple[float, bytes]] = []
    while True:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "replay went silent"
        data = os.read(proc.stdout.fileno(), 4096)
        if not data:
            break
        seen.append((time.monotonic(), data))
    assert proc.wait(10) == 0
    out = b"".join(d for _, d in seen).decode()
    assert out == "[09:26:53] room 'Typing' opened with Tom\n[09:26:53] Tom: one two\n    three\n"

    def when(text: str) -> float:
        so_far = b""
        for moment, data in seen:
            so_far += data
            if text.encode() in so_far:
                return moment
        raise AssertionError(text)

    # The chunks came 0.6 s apart; at 2x, 0.3 s.
    assert when("one two") - when("Tom: one") == pytest.approx(0.3, abs=0.12)
    assert when("three\n") - when("one two") == pytest.approx(0.3, abs=0.12)

"""Transcript export over REST: the four formats in full, ranges, the raw event feed, paging.

The session (tests/support/sessions.py) is recorded with chosen times, so every expected
file below is exactly what those events must give.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer
from tests.support.sessions import BOOK_CLUB, T0, record
from tomchat.chat.export import render_all
from tomchat.domain.events import MessagePosted, ReplyChunk, ReplyStarted
from tomchat.store.event_store import EventStore
from tomchat.store.rooms import RoomReader
from tomchat.store.transcripts import Bound, Span, TranscriptReader

pytestmark = pytest.mark.timeout(60)


def message(
    id: str,
    content: str,
    username: str,
    timestamp: str,
    version: int,
    *,
    ai: bool = False,
    status: str = "complete",
    source: str = "text",
    audio: str | None = None,
) -> dict[str, Any]:
    return {
        "id": id,
        "roomId": "books",
        "content": content,
        "username": username,
        "timestamp": timestamp,
        "isAI": ai,
        "audioUrl": audio,
        "status": status,
        "source": source,
        "version": version,
        "characterId": None,
        "edited": False,
        "deleted": False,
        "alternativeOf": None,
        "chosen": True,
    }


R1_AUDIO = "/media/r1-voice-0123456789ab.mp3"
BOB_AUDIO = "/media/bob-voice-0123456789.webm"

MESSAGES = [
    message("g1", "Hello, I'm Tom.", "Tom", "2026-03-14T09:26:53.589793Z", 3, ai=True),
    message("m1", "Hello Tom\n\nHow are *you*?", "ann_b", "2026-03-14T09:26:55.089793Z", 4),
    message("r1", "I am fine.", "Tom", "2026-03-14T09:26:55.589793Z", 9, ai=True, audio=R1_AUDIO),
    message(
        "m2",
        "Tell me about whales",
        "bob",
        "2026-03-14T09:27:03.589793Z",
        10,
        source="voice",
        audio=BOB_AUDIO,
    ),
    message(
        "r2", "Whales are", "Tom", "2026-03-14T09:27:04.089793Z", 14, ai=True, status="stopped"
    ),
    message("m3", "stop", "ann_b", "2026-03-14T09:27:04.839793Z", 13),
    message("r3", "", "Tom", "2026-03-15T09:26:53.589793Z", 16, ai=True, status="failed"),
]

JSON_HEAD = {
    "room": {
        "id": "books",
        "name": "Book *club*",
        "character": "Tom",
        "createdAt": "2026-03-14T09:26:53.589793Z",
        "cast": [{"id": "tom", "name": "Tom", "revision": 1}],
    },
    "version": 16,
    "count": 7,
    "range": {"from": None, "to": None},
}


def markdown(base: str) -> str:
    return f"""\
# Book \\*club\\*

Room `books` with Tom · 7 messages · 2026-03-14 09:26:53 to 2026-03-15 09:26:53 UTC

## 2026-03-14

**Tom** · 09:26:53

> Hello, I'm Tom.

**ann\\_b** · 09:26:55

> Hello Tom
>
> How are *you*?

**Tom** · 09:26:55 · [audio]({base}{R1_AUDIO})

> I am fine.

**bob** · 09:27:03 · voice · [audio]({base}{BOB_AUDIO})

> Tell me about whales

**Tom** · 09:27:04 · *stopped*

> Whales are

**ann\\_b** · 09:27:04

> stop

## 2026-03-15

**Tom** · 09:26:53 · *failed*
"""


TEXT = """\
[2026-03-14 09:26:53 UTC] Tom: Hello, I'm Tom.
[2026-03-14 09:26:55 UTC] ann_b: Hello Tom

    How are *you*?
[2026-03-14 09:26:55 UTC] Tom: I am fine.
[2026-03-14 09:27:03 UTC] bob (voice): Tell me about whales
[2026-03-14 09:27:04 UTC] Tom (stopped): Whales are
[2026-03-14 09:27:04 UTC] ann_b: stop
[2026-03-15 09:26:53 UTC] Tom (failed):
"""


async def export(
    http: httpx.AsyncClient, fmt: str, room: str = "books", **params: str
) -> httpx.Response:
    response = await http.get(f"/api/rooms/{room}/transcript", params={"format": fmt, **params})
    assert response.status_code == 200, response.text
    return response


async def test_every_format_in_full(server: RunningServer) -> None:
    await record(server.services.store, "books")
    async with httpx.AsyncClient(base_url=server.url) as http:
        as_json = await export(http, "json")
        assert as_json.headers["content-type"] == "application/json"
        assert as_json.headers["content-disposition"] == 'attachment; filename="tomchat-books.json"'
        assert as_json.json() == {**JSON_HEAD, "messages": MESSAGES}
        # A message a line, so the file diffs and greps well.
        assert as_json.text.splitlines()[1:-1] == [
            json.dumps(m, separators=(",", ":"), ensure_ascii=False) + "," for m in MESSAGES[:-1]
        ] + [json.dumps(MESSAGES[-1], separators=(",", ":"), ensure_ascii=False)]

        as_jsonl = await export(http, "jsonl")
        assert as_jsonl.headers["content-type"] == "application/x-ndjson"
        assert as_jsonl.headers["content-disposition"].endswith('filename="tomchat-books.jsonl"')
        assert as_jsonl.text.endswith("\n")
        assert [json.loads(line) for line in as_jsonl.text.splitlines()] == MESSAGES

        as_markdown = await export(http, "markdown")
        assert as_markdown.headers["content-type"] == "text/markdown; charset=utf-8"
        assert as_markdown.headers["content-disposition"].endswith('filename="tomchat-books.md"')
        assert as_markdown.text == markdown(server.url)

        as_text = await export(http, "text")
        assert as_text.headers["content-type"] == "text/plain; charset=utf-8"
        assert as_text.headers["content-disposition"].endswith('filename="tomchat-books.txt"')
        assert as_text.text == TEXT


async def test_ranges_by_version_and_by_time(server: RunningServer) -> None:
    await record(server.services.store, "books")
    async with httpx.AsyncClient(base_url=server.url) as http:
        by_version = await export(http, "jsonl", **{"from": "5", "to": "11"})
        assert [json.loads(x)["id"] for x in by_version.text.splitlines()] == ["r1", "m2", "r2"]
        # Times are inclusive and naive ones are UTC; an offset is honoured.
        by_time = await export(
            http,
            "json",
            **{"from": "2026-03-14T09:27:03.589793", "to": "2026-03-14T10:27:04.500+01:00"},
        )
        body = by_time.json()
        assert [m["id"] for m in body["messages"]] == ["m2", "r2"]
        assert body["count"] == 2
        assert body["range"] == {
            "from": "2026-03-14T09:27:03.589793Z",
            "to": "2026-03-14T09:27:04.500000Z",
        }
        excerpt = await export(http, "markdown", **{"from": "10"})
        assert excerpt.text.splitlines()[:5] == [
            "# Book \\*club\\*",
            "",
            "Room `books` with Tom · 4 messages · 2026-03-14 09:27:03 to 2026-03-15 09:26:53 UTC",
            "",
            "Excerpt: messages from version 10 on.",
        ]
        empty = await export(http, "json", **{"from": "100"})
        assert empty.json() == {
            **JSON_HEAD,
            "count": 0,
            "range": {"from": 100, "to": None},
            "messages": [],
        }
        assert (await export(http, "text", **{"from": "100"})).text == ""


async def test_a_reply_still_streaming_exports_its_text_so_far(server: RunningServer) -> None:
    store = server.services.store
    await record(store, "books", BOOK_CLUB[:2])
    await store.append("books", [ReplyStarted(message_id="live", character="Tom")])
    await store.append("books", [ReplyChunk(message_id="live", index=0, text="Half a ")])
    await store.append("books", [ReplyChunk(message_id="live", index=1, text="thought")])
    async with httpx.AsyncClient(base_url=server.url) as http:
        text = (await export(http, "text")).text
        assert text.splitlines()[-1].endswith("] Tom (still replying): Half a thought")
        [streaming] = [
            m for m in (await export(http, "json")).json()["messages"] if m["id"] == "live"
        ]
        assert (streaming["status"], streaming["content"]) == ("streaming", "Half a thought")
        # The web client's pages show it the same way.
        page = (await http.get("/api/rooms/books/messages")).json()
        assert page["messages"][-1]["content"] == "Half a thought"


async def test_pages_are_keyset_and_give_the_same_file(store: EventStore) -> None:
    """Tiny pages on both backends: the file is the same as one read whole."""
    await record(store, "books")
    for i in range(25):
        await store.append(
            "books", [MessagePosted(message_id=f"x{i}", username="cy", content=f"{i}")]
        )
    reader = TranscriptReader(store.db)
    summary = await reader.summary("books")
    assert summary is not None and summary.count == 32 and summary.version == 41
    pages = [page async for page in reader.message_pages(summary, page_size=4)]
    assert [len(p) for p in pages] == [4] * 8
    rows = [r for p in pages for r in p]
    assert [r.first_version for r in rows] == sorted(r.first_version for r in rows)
    # The export reads rows raw, for speed: they must equal the typed rows of RoomReader.
    typed, _ = await RoomReader(store.db).page("books", None, 200)
    assert rows == typed
    assert rows[0].created_at.tzinfo is UTC and rows[-1].completed_at is not None
    assert len({r.id for r in rows}) == 32
    for fmt in ("json", "jsonl", "markdown", "text"):
        assert render_all(fmt, summary, pages) == render_all(fmt, summary, [rows])
    # Later messages are not part of an export that already began.
    await store.append("books", [MessagePosted(message_id="late", username="cy", content="late")])
    again = [r.id async for p in reader.message_pages(summary, page_size=10) for r in p]
    assert again == [r.id for r in rows]
    ranged = await reader.summary("books", Span(Bound(version=10), Bound(at=T0.replace(day=15))))
    assert ranged is not None and ranged.count == 3 + 1  # m2, r2, m3 and r3 (that day, 09:26)
    events = [
        e.version async for p in reader.event_pages("books", 3, upto=40, page_size=7) for e in p
    ]
    assert events == list(range(4, 41))
    assert await reader.summary("nobody") is None
    assert (await reader.message_counts(["books", "nobody"])) == {"books": 33}


async def test_the_raw_log_streams_as_ndjson(server: RunningServer) -> None:
    await record(server.services.store, "books")
    ndjson = {"Accept": "application/x-ndjson"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        whole = await http.get("/api/rooms/books/events", params={"after": 2}, headers=ndjson)
        assert whole.status_code == 200
        assert whole.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(x) for x in whole.text.splitlines()]
        assert [e["version"] for e in lines] == list(range(3, 17))
        page = (
            await http.get("/api/rooms/books/events", params={"after": 2, "limit": 1000})
        ).json()
        assert lines == page["events"] and page["next"] is None and page["version"] == 16
        assert lines[3] == {
            "version": 6,
            "type": "reply.chunk",
            "data": {"message_id": "r1", "index": 0, "text": "I am "},
            "recordedAt": "2026-03-14T09:26:55.839793Z",
        }
        capped = await http.get(
            "/api/rooms/books/events", params={"after": 2, "limit": 3}, headers=ndjson
        )
        assert [json.loads(x)["version"] for x in capped.text.splitlines()] == [3, 4, 5]
        # Browsers ask for anything: they get the JSON page.
        default = await http.get("/api/rooms/books/events", headers={"Accept": "*/*"})
        assert default.headers["content-type"] == "application/json"
        assert len(default.json()["events"]) == 16


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/rooms/books/transcript?format=xml", 400),
        ("/api/rooms/books/transcript?format=", 400),
        ("/api/rooms/books/transcript?from=yesterday", 400),
        ("/api/rooms/books/transcript?to=1.5", 400),
        ("/api/rooms/books/transcript?from=-3", 400),
        ("/api/rooms/nobody/transcript?format=json", 404),
        ("/api/rooms/bad%20id/transcript", 400),
        ("/api/rooms/books/events?after=abc", 400),
        ("/api/rooms/books/events?limit=0", 400),
        ("/api/rooms/nobody/events", 404),
        ("/api/rooms/books/messages?before=abc", 400),
        ("/api/rooms/books/messages?before=0", 400),
        ("/api/rooms/books/replay?speed=-1", 400),
        ("/api/rooms/books/replay?speed=0", 400),
        ("/api/rooms/books/replay?speed=fast", 400),
        ("/api/rooms/books/replay?speed=nan", 400),
        ("/api/rooms/books/replay?maxPause=-1", 400),
        ("/api/rooms/books/replay?after=two", 400),
        ("/api/rooms/books/replay?after=-1", 400),
        ("/api/rooms/nobody/replay", 404),
    ],
)
async def test_bad_parameters_are_problem_details(
    server: RunningServer, path: str, status: int
) -> None:
    await server.services.conversation.ensure_room("books")
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get(path)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == status


async def test_a_bad_last_event_id_is_a_problem(server: RunningServer) -> None:
    await server.services.conversation.ensure_room("books")
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/api/rooms/books/replay", headers={"Last-Event-ID": "x7"})
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        assert "Last-Event-ID" in response.json()["title"]

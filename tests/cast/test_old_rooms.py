"""Rooms written before casts (tests/data/release-0.1.db and release-0.2.db, made by the
releases before) are served unchanged: messages, exports, replay; and answered again."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.ai.test_voice_room import Listener
from tests.cast.test_cast_rooms import settled
from tests.conftest import RunningServer, serve
from tests.support.settings import make_settings
from tests.support.sse import read_events
from tomchat.domain.codec import decode_event
from tomchat.domain.events import CastMember, ReplyStarted, RoomCreated

pytestmark = pytest.mark.timeout(90)
DATA = Path(__file__).parent.parent / "data"


def test_room_created_before_casts_is_upcast_to_a_cast_of_its_character() -> None:
    old = b'{"name":"Old room","character":"Tom"}'
    assert decode_event("room.created", old) == RoomCreated(
        name="Old room",
        character="Tom",
        cast=(CastMember("tom", "Tom", 1),),
        reply_mode="single",
    )
    # reply.started before casts: no character id (its room's only character).
    started = decode_event("reply.started", b'{"message_id":"r","character":"Tom"}')
    assert started == ReplyStarted(message_id="r", character="Tom", character_id=None)
    new = b'{"name":"n","character":"Mia","cast":[{"id":"mia","name":"Mia","revision":4}],"reply_mode":"all"}'
    assert decode_event("room.created", new) == RoomCreated(
        name="n", character="Mia", cast=(CastMember("mia", "Mia", 4),), reply_mode="all"
    )


@pytest.fixture
async def old_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    for name in ("release-0.1.db", "release-0.2.db"):
        shutil.copyfile(DATA / name, tmp_path / name)
    # One server per file would double the start-up; the 0.2 file is served here, and the
    # 0.1 file by tests/test_reply_events.py as before (plus the check below).
    settings = make_settings(
        tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'release-0.2.db'}", demo_delay_ms=1
    )
    async with serve(settings) as running:
        yield running


async def test_a_room_from_before_casts_is_served_unchanged(old_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=old_server.url) as http:
        room = (await http.get("/api/rooms/before-casts")).json()
        assert (room["name"], room["character"], room["version"]) == ("Before casts", "Tom", 13)
        assert [(m["id"], m["name"], m["revision"]) for m in room["cast"]] == [("tom", "Tom", 1)]
        assert room["usage"] == {"promptTokens": 42, "completionTokens": 3, "repliesCounted": 1}
        page = (await http.get("/api/rooms/before-casts/messages")).json()["messages"]
        assert [
            (m["username"], m["content"], m["status"], m["source"], m["audioUrl"], m["characterId"])
            for m in page
        ] == [
            ("Tom", "Hey everyone, I'm Tom.", "complete", "text", None, None),
            ("ann", "Hi Tom", "complete", "text", None, None),
            ("Tom", "Hi ann!", "complete", "text", "/media/a1.mp3", None),
            ("bob", "Can you hear me?", "complete", "voice", "/media/u2.webm", None),
            ("Tom", "Loud and ", "stopped", "text", None, None),
        ]
        text = (await http.get("/api/rooms/before-casts/transcript?format=text")).text
        assert text.splitlines() == [
            "[2026-11-20 18:00:03 UTC] Tom: Hey everyone, I'm Tom.",
            "[2026-11-20 18:00:04 UTC] ann: Hi Tom",
            "[2026-11-20 18:00:05 UTC] Tom: Hi ann!",
            "[2026-11-20 18:00:10 UTC] bob (voice): Can you hear me?",
            "[2026-11-20 18:00:11 UTC] Tom (stopped): Loud and",
        ]
        md = (await http.get("/api/rooms/before-casts/transcript?format=markdown")).text
        assert "Room `before-casts` with Tom · 5 messages" in md
        replayed = []
        params = {"speed": "1000", "maxPause": "0.01"}
        async with http.stream("GET", "/api/rooms/before-casts/replay", params=params) as r:
            async for event in read_events(r):
                if event.event in ("", "end"):
                    if event.event == "end":
                        break
                    continue
                replayed.append(event.json())
        assert [e["type"] for e in replayed][:3] == [
            "room.created",
            "reply.started",
            "reply.completed",
        ]
        assert replayed[0]["data"]["cast"] == [{"id": "tom", "name": "Tom", "revision": 1}]

    # The new release goes on: the old room's character (Tom, from the library) answers.
    ann = Listener(old_server.url, "before-casts", "ann")
    await ann.join()
    await ann.call("sendMessage", {"roomId": "before-casts", "content": "still there?"})
    await settled(old_server, "before-casts")
    [done] = ann.of("aiComplete")
    assert (done["username"], done["characterId"], done["status"]) == ("Tom", "tom", "complete")
    assert done["content"]
    await ann.sio.disconnect()

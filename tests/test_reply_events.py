"""``reply.completed`` with its ending and usage: recorded, shown, totalled, and a database
written by the release before still served (tests/data/release-0.1.db)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ai.conftest import LLM_KEY
from tests.ai.test_voice_room import listener
from tests.conftest import RunningServer, start_server
from tests.fakes.llm import FakeLLM, openai_chunk, openai_stream
from tests.support.settings import make_settings
from tomchat.domain.codec import decode_event, encode_data
from tomchat.domain.events import ReplyCompleted, TokenUsage

OLD_DB = Path(__file__).parent / "data" / "release-0.1.db"


def test_old_reply_completed_data_is_upcast() -> None:
    old = b'{"message_id":"r","content":"Hi","status":"stopped","error":null}'
    assert decode_event("reply.completed", old) == ReplyCompleted(
        message_id="r", content="Hi", status="stopped", finish_reason=None, usage=None
    )
    new = ReplyCompleted(
        message_id="r",
        content="Hi",
        status="truncated",
        finish_reason="length",
        usage=TokenUsage(3, 800),
    )
    data = encode_data(new)
    assert b'"usage":{"prompt_tokens":3,"completion_tokens":800}' in data
    assert decode_event("reply.completed", data) == new


@pytest.fixture
async def old_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    copy = tmp_path / "old.db"
    shutil.copyfile(OLD_DB, copy)
    settings = make_settings(tmp_path, database_url=f"sqlite+aiosqlite:///{copy}", demo_delay_ms=1)
    running, stop = await start_server(settings)
    yield running
    await stop()


async def test_a_database_of_the_previous_release_is_served(old_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=old_server.url) as http:
        room = (await http.get("/api/rooms/old-room")).json()
        assert (room["name"], room["version"]) == ("Old room", 20)
        assert room["usage"] == {"promptTokens": 0, "completionTokens": 0, "repliesCounted": 0}
        page = (await http.get("/api/rooms/old-room/messages")).json()["messages"]
        assert [(m["username"], m["content"], m["status"]) for m in page if m["isAI"]] == [
            ("Tom", "Hey! I'm Tom.", "complete"),
            ("Tom", "Hello ann.", "complete"),
            ("Tom", "I was say", "stopped"),
            ("Tom", "", "failed"),
            ("Tom", "Half", "interrupted"),
        ]
        log = (await http.get("/api/rooms/old-room/events")).json()["events"]
        ended = [e["data"] for e in log if e["type"] == "reply.completed"]
        assert ended[2] == {
            "message_id": "r-2",
            "content": "I was say",
            "status": "stopped",
            "error": None,
            "finish_reason": None,
            "usage": None,
            # Who stopped it was not kept before: unknown.
            "stopped_by": None,
        }
        # The new release goes on writing the old room.
        ann = await listener(old_server, "old-room", "ann")
        await ann.call("sendMessage", {"roomId": "old-room", "content": "still there?"})
        done = await ann.completed()
        assert done["status"] == "complete" and done["content"]
        await ann.sio.disconnect()
    stored = [e.event for e in await old_server.services.store.read_stream("old-room")]
    last = stored[-1]
    assert isinstance(last, ReplyCompleted) and last.finish_reason == "stop"


@pytest.fixture
def llm() -> AsyncIterator[FakeLLM]:
    with FakeLLM(authorization=f"Bearer {LLM_KEY}") as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
async def openai_server(tmp_path: Path, llm: FakeLLM) -> AsyncIterator[RunningServer]:
    env = {
        "TOMCHAT_LLM": "openai",
        "TOMCHAT_LLM_BASE_URL": f"{llm.url}/v1",
        "TOMCHAT_LLM_API_KEY": LLM_KEY,
        "TOMCHAT_LLM_MAX_TOKENS": "64",
    }
    settings = make_settings(
        tmp_path,
        env=env,
    )
    running, stop = await start_server(settings)
    yield running
    await stop()


async def test_endings_and_usage_reach_the_room_and_the_totals(
    openai_server: RunningServer, llm: FakeLLM
) -> None:
    llm.script(
        openai_stream(["A long ", "story"], finish_reason="length"),
        openai_stream([openai_chunk(refusal="I won't write that.")]),
    )
    ann = await listener(openai_server, "ends", "ann")
    await ann.call("sendMessage", {"roomId": "ends", "content": "tell me a story"})
    first = await ann.completed()
    assert (first["content"], first["status"]) == ("A long story", "truncated")
    await ann.call("sendMessage", {"roomId": "ends", "content": "something bad"})
    await ann.wait_for(lambda c: len(c.of("aiComplete")) == 2)
    second = ann.of("aiComplete")[-1]
    assert (second["content"], second["status"]) == ("I won't write that.", "filtered")
    await ann.sio.disconnect()
    assert [r.json()["max_tokens"] for r in llm.requests] == [64, 64]
    completed: list[Any] = [
        e.event
        for e in await openai_server.services.store.read_stream("ends")
        if isinstance(e.event, ReplyCompleted)
    ][1:]  # after the greeting
    assert [(c.status, c.finish_reason, c.usage) for c in completed] == [
        ("truncated", "length", TokenUsage(12, 7)),
        ("filtered", "stop", TokenUsage(12, 7)),
    ]
    async with httpx.AsyncClient(base_url=openai_server.url) as http:
        room = (await http.get("/api/rooms/ends")).json()
        page = (await http.get("/api/rooms/ends/messages")).json()["messages"]
    assert room["usage"] == {"promptTokens": 24, "completionTokens": 14, "repliesCounted": 2}
    assert [m["status"] for m in page if m["isAI"]] == ["complete", "truncated", "filtered"]

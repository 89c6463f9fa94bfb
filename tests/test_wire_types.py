"""The payload types are the protocol: what a real server sends decodes into them and encodes
back to the very same JSON, and the web client's generated types are those of today's code."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import socketio

from tests.ai.conftest import LLM_KEY
from tests.conftest import start_server
from tests.fakes.fish import FakeFish
from tests.fakes.llm import FakeLLM, Hang, Reply, openai_stream
from tests.support.settings import make_settings
from tomchat.domain.limits import MAX_VERSION
from tomchat.wire.payloads import (
    CatchUpAck,
    ErrorAck,
    EventPage,
    MessagePage,
    SnapshotAck,
)
from tomchat.wire.schema import ACKS, SERVER_EVENTS, schema

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "web" / "src" / "api" / "wire.gen.ts"
OGG = b"OggS\x00\x02" + bytes(range(256)) * 20


def round_trip(payload: Any, kind: type[msgspec.Struct]) -> msgspec.Struct:
    """Decode the JSON of ``payload`` as ``kind`` and check that encoding it gives the same
    object back: no key the type lacks, none it adds, ``null`` where the server sent null."""
    decoded = msgspec.json.decode(json.dumps(payload), type=kind, strict=True)
    assert msgspec.to_builtins(decoded) == payload, kind.__name__
    return decoded


def ack_type(event: str, ack: dict[str, Any]) -> type[msgspec.Struct]:
    if ack.get("ok") is False:
        return ErrorAck
    kinds = ACKS[event]
    if len(kinds) == 1:
        return kinds[0]
    return CatchUpAck if "events" in ack else SnapshotAck


@pytest.mark.node
def test_generated_typescript_is_current(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not (ROOT / "web" / "node_modules" / "json-schema-to-typescript").is_dir():
        pytest.skip("run `npm ci` in web (the README test command does)")
    out = tmp_path / "wire.gen.ts"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-wire-types"), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert out.read_text() == GENERATED.read_text(), (
        "web/src/api/wire.gen.ts is stale: run scripts/gen-wire-types and commit the result"
    )


def test_schema_names_every_event_and_ack() -> None:
    doc = schema()
    defs = doc["$defs"]
    assert doc["title"] == "ServerEvents"
    assert set(doc["properties"]) == {
        "message",
        "aiStart",
        "aiTextChunk",
        "aiAudio",
        "aiComplete",
        "presence",
        "typing",
        "roomChanged",
        "kicked",
        "messageEdited",
        "messageDeleted",
        "alternativeChosen",
    }
    assert set(defs["Acks"]["properties"]) == {
        "joinRoom",
        "resync",
        "sendMessage",
        "sendVoiceMessage",
        "stopGeneration",
        "leaveRoom",
        "typing",
        "kickMember",
        "lockRoom",
        "renameRoom",
        "setCast",
        "regenerate",
        "chooseAlternative",
        "editMessage",
        "deleteMessage",
    }
    assert defs["Typing"]["required"] == ["roomId", "username"]
    # What the server always sends is required; what it leaves out when unset is not.
    message = defs["Message"]
    assert message["required"] == [
        "id",
        "roomId",
        "content",
        "username",
        "timestamp",
        "isAI",
        "audioUrl",
        "status",
        "version",
        "characterId",
        "edited",
        "deleted",
        "alternativeOf",
        "chosen",
    ]
    assert set(message["properties"]) - set(message["required"]) == {
        "source",
        "clientId",
        "error",
        "stoppedBy",
        "alternatives",
    }
    assert message["properties"]["status"]["enum"] == [
        "complete",
        "failed",
        "filtered",
        "interrupted",
        "stopped",
        "streaming",
        "truncated",
    ]
    assert defs["SnapshotAck"]["required"] == [
        "ok",
        "roomId",
        "version",
        "messages",
        "streaming",
        "hasMore",
    ]
    assert defs["ErrorAck"]["properties"]["ok"] == {"enum": [False]}
    assert all(d["additionalProperties"] is False for d in defs.values())


# --- what a real server sends ------------------------------------------------------------


@pytest.fixture
def fish() -> Iterator[FakeFish]:
    with FakeFish(frames_per_char=0.2, frames_per_message=4) as fake:
        yield fake


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM(authorization=f"Bearer {LLM_KEY}") as fake:
        yield fake


class Recorder:
    """A python-socketio client that keeps every event the server sends and every ack."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient()
        self.events: list[tuple[str, Any]] = []
        self.acks: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()

        @self.sio.on("*")
        async def record(name: str, payload: Any) -> None:
            self.events.append((name, payload))
            self._changed.set()

    async def call(self, event: str, payload: Any) -> Any:
        ack = await self.sio.call(event, payload, timeout=15)
        self.acks.append((event, ack))
        return ack

    def of(self, name: str) -> list[Any]:
        return [p for n, p in self.events if n == name]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


@pytest.mark.timeout(90)
async def test_every_payload_a_server_sends_round_trips(
    tmp_path: Path, llm: FakeLLM, fish: FakeFish
) -> None:
    settings = make_settings(
        tmp_path,
        env={
            "TOMCHAT_LLM": "openai",
            "TOMCHAT_LLM_BASE_URL": f"{llm.url}/v1",
            "TOMCHAT_LLM_API_KEY": LLM_KEY,
            "TOMCHAT_LLM_MODEL": "tom-7b",
            "TOMCHAT_TTS": "fish",
            "TOMCHAT_ASR": "fish",
            "FISH_API_KEY": fish.api_key,
            "TOMCHAT_FISH_BASE_URL": fish.url,
            "TOMCHAT_FISH_VOICE": "tom-voice",
        },
    )
    server, stop = await start_server(settings)
    ann = Recorder()
    try:
        await ann.sio.connect(server.url, transports=["websocket"], wait_timeout=10)
        room = "wire"
        joined = await ann.call("joinRoom", {"roomId": room, "username": "ann"})
        assert joined["ok"] and "reset" not in joined

        # Someone else writing: ann hears of it (typing has no version: it is not logged).
        bob = socketio.AsyncClient()
        await bob.connect(server.url, transports=["websocket"], wait_timeout=10)
        try:
            await bob.call("joinRoom", {"roomId": room, "username": "bob"}, timeout=15)
            assert await bob.call("typing", {"roomId": room}, timeout=15) == {"ok": True}
            await ann.wait_for(lambda: bool(ann.of("typing")))
        finally:
            await bob.disconnect()
        assert await ann.call("typing", {"roomId": room}) == {"ok": True}
        assert ann.of("typing") == [{"roomId": room, "username": "bob"}]

        # A text message, answered in words and voice.
        llm.script(openai_stream(["Ahoy ", "ann. ", "Fair winds!"], delay=0.02))
        sent = await ann.call(
            "sendMessage", {"roomId": room, "content": "Hi Tom", "clientId": "c1"}
        )
        await ann.wait_for(lambda: len(ann.of("aiComplete")) == 1)
        await ann.wait_for(lambda: bool(ann.of("aiAudio")))

        # A voice message, answered too.
        llm.script(openai_stream(["I hear you."]))
        voice = await ann.call("sendVoiceMessage", {"roomId": room, "audio": OGG})
        assert voice["ok"], voice
        await ann.wait_for(lambda: len(ann.of("aiComplete")) == 2)

        # A reply that hangs: a snapshot now shows it streaming; then it is stopped.
        steps = openai_stream(["Once upon ", "a time "], finish=False, usage=False, done=False)
        llm.script(Reply(steps=[*steps.steps, Hang()]))
        await ann.call("sendMessage", {"roomId": room, "content": "A story?"})
        await ann.wait_for(lambda: len(ann.of("aiTextChunk")) >= 5)
        mid = await ann.call("joinRoom", {"roomId": room, "username": "ann"})
        assert [s["content"] for s in mid["streaming"]] == ["Once upon a time "]
        reply_id = mid["streaming"][0]["messageId"]
        stopped = await ann.call("stopGeneration", {"roomId": room, "messageId": reply_id})
        assert stopped == {"ok": True}
        await ann.wait_for(lambda: len(ann.of("aiComplete")) == 3)

        # The tree: a new alternative of the stopped reply, the first one chosen again, an
        # edit and a deletion.
        llm.script(openai_stream(["Once upon a time, the end."]))
        again = await ann.call("regenerate", {"roomId": room, "messageId": reply_id})
        assert again["ok"], again
        await ann.wait_for(lambda: len(ann.of("aiComplete")) == 4)
        chosen = await ann.call("chooseAlternative", {"roomId": room, "messageId": reply_id})
        assert chosen["ok"], chosen
        edited = await ann.call(
            "editMessage", {"roomId": room, "messageId": sent["messageId"], "content": "Hi!"}
        )
        assert edited["ok"], edited
        deleted = await ann.call("deleteMessage", {"roomId": room, "messageId": voice["messageId"]})
        assert deleted["ok"], deleted
        await ann.wait_for(lambda: bool(ann.of("messageDeleted")))

        # Catching up: the events form, and the reset form from past the head.
        caught = await ann.call("resync", {"roomId": room, "since": 1})
        assert caught["events"][0]["version"] == 2
        reset = await ann.call("resync", {"roomId": room, "since": MAX_VERSION})
        assert reset["reset"] is True
        # The host's acts: a rename and a lock reach the room (roomChanged), a kick the
        # kicked member's socket (kicked). Ann made the room by joining it: she hosts it.
        dan = Recorder()
        await dan.sio.connect(server.url, transports=["websocket"], wait_timeout=10)
        assert (await dan.call("joinRoom", {"roomId": room, "username": "dan"}))["ok"]
        assert await ann.call("renameRoom", {"roomId": room, "name": "Renamed"}) == {"ok": True}
        assert await ann.call("lockRoom", {"roomId": room, "locked": True}) == {"ok": True}
        assert await ann.call("kickMember", {"roomId": room, "username": "dan"}) == {"ok": True}
        await ann.wait_for(lambda: len(ann.of("roomChanged")) == 2)
        await dan.wait_for(lambda: bool(dan.of("kicked")))
        ann.events += [("kicked", p) for p in dan.of("kicked")]
        await dan.sio.disconnect()
        # Refusals: a reply that does not exist, an unknown event, and too many resyncs.
        missing = await ann.call("stopGeneration", {"roomId": room, "messageId": "nope"})
        assert missing["error"]["code"] == "not_found"
        unknown = await ann.call("fly", {"roomId": room})
        assert unknown["error"]["code"] == "bad_request"
        for _ in range(30):
            limited = await ann.call("resync", {"roomId": room, "since": 1})
            if not limited["ok"]:
                break
        assert limited["error"]["code"] == "rate_limited" and limited["error"]["retryAfter"] > 0
        # The cast changes (the only character there is, now answering everyone).
        recast = await ann.call("setCast", {"roomId": room, "cast": ["tom"], "replyMode": "all"})
        assert recast["ok"] and recast["replyMode"] == "all", recast
        await ann.wait_for(lambda: bool(ann.of("roomChanged")))
        left = await ann.call("leaveRoom", {"roomId": room})
        assert left == {"ok": True}

        async with httpx.AsyncClient(base_url=server.url) as http:
            messages = (await http.get(f"/api/rooms/{room}/messages")).json()
            events = (await http.get(f"/api/rooms/{room}/events")).json()
    finally:
        await ann.sio.disconnect()
        await stop()

    # Every kind of payload was sent, and each decodes to its type and back unchanged.
    assert {name for name, _ in ann.events} == set(SERVER_EVENTS)
    for name, payload in ann.events:
        round_trip(payload, SERVER_EVENTS[name])
    kinds = {ack_type(event, ack) for event, ack in ann.acks}
    assert kinds == {k for ks in ACKS.values() for k in ks} | {ErrorAck}
    for event, ack in ann.acks:
        round_trip(ack, ack_type(event, ack))
    round_trip(messages, MessagePage)
    round_trip(events, EventPage)

    # Which keys are present with null and which are left out, as clients rely on.
    [posted] = [m for m in ann.of("message") if m["content"] == "Hi Tom"]
    assert posted["clientId"] == "c1" and "error" not in posted
    [heard] = [m for m in ann.of("message") if m["source"] == "voice"]
    assert heard["clientId"] is None and heard["audioUrl"] == voice["audioUrl"]
    assert sent == {"ok": True, "messageId": posted["id"], "version": posted["version"]}
    first = ann.of("aiComplete")[0]
    assert first["error"] is None and "source" not in first and "clientId" not in first
    assert ann.of("aiComplete")[2]["status"] == "stopped"
    page = messages["messages"]
    assert all("clientId" not in m and "error" not in m and "source" in m for m in page)
    assert unknown == {
        "ok": False,
        "error": {"code": "bad_request", "message": "unknown event 'fly'"},
    }

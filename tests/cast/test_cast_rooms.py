"""A room with a cast, end to end over python-socketio: who answers (mentions, the last
speaker, reply mode ``all``, hand-offs capped at three), one reply streaming at a time, and
``setCast`` with its ``roomChanged``."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.ai.test_voice_room import Listener
from tests.conftest import RunningServer
from tests.support.polling import eventually
from tomchat.domain.events import CastMember, RoomCastChanged

pytestmark = pytest.mark.timeout(90)


async def settled(server: RunningServer, room: str, member: Listener | None = None) -> None:
    """Wait until the room owes no reply and none streams (and ``member`` has heard all)."""
    conversation = server.services.conversation

    async def idle() -> bool:
        if conversation.serving(room) or conversation.streaming_in(room):
            return False
        return await conversation.next_turn(room) is None

    await eventually(idle, timeout=30, what=f"room {room} settled")
    if member is not None:
        head = await server.services.store.head(room) or 0

        async def heard() -> bool:
            return max((p.get("version", 0) for _, p, _ in member.seen), default=0) >= head

        await eventually(heard, timeout=10, what=f"{member.username} heard the room's log")
    else:
        await asyncio.sleep(0.2)  # the last events reach the sockets
    assert await conversation.next_turn(room) is None


def replies(member: Listener, since: int = 0) -> list[tuple[str, str]]:
    """(characterId, username) of every aiComplete after the first ``since`` events."""
    return [
        (p["characterId"], p["username"])
        for name, p, _ in member.seen[since:]
        if name == "aiComplete"
    ]


def one_at_a_time(member: Listener) -> None:
    """No aiStart comes while another reply is still open."""
    open_reply: str | None = None
    for name, payload, _ in member.seen:
        if name == "aiStart":
            assert open_reply is None, f"{payload['messageId']} started during {open_reply}"
            open_reply = payload["messageId"]
        elif name == "aiComplete":
            assert payload["id"] == open_reply
            open_reply = None


async def make_room(http: httpx.AsyncClient, name: str, **extra: Any) -> dict[str, Any]:
    answer = await http.post("/api/rooms", json={"name": name, "id": name, **extra})
    assert answer.status_code == 201, answer.text
    room: dict[str, Any] = answer.json()
    return room


async def test_a_two_character_demo_room(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        room = await make_room(http, "scene", cast=["tom", "mia"])
        assert [(m["id"], m["name"], m["revision"]) for m in room["cast"]] == [
            ("tom", "Tom", 1),
            ("mia", "Mia", 1),
        ]
        assert room["replyMode"] == "single"
        bad = await http.post("/api/rooms", json={"name": "x", "cast": ["tom", "ghost"]})
        assert bad.status_code == 400 and "ghost" in bad.json()["detail"]
        too_many = await http.post("/api/rooms", json={"name": "x", "cast": ["tom"] * 9})
        assert too_many.status_code == 400

    ann = Listener(server.url, "scene", "ann")
    key = (await ann.join())["memberKey"]
    # The host token POST /api/rooms answered makes ann the room's host (she may recast it).
    hosting = {"roomId": "scene", "username": "ann", "memberKey": key}
    ack = await ann.call("joinRoom", {**hosting, "hostToken": room["hostToken"]})
    assert ack.get("you") == {"username": "ann", "role": "host"}, ack
    assert [(c["id"], c["name"], c["avatarUrl"]) for c in ack["cast"]] == [
        ("tom", "Tom", "/api/characters/tom/avatar?revision=1"),
        ("mia", "Mia", "/api/characters/mia/avatar?revision=1"),
    ]
    assert ack["replyMode"] == "single"
    [greeting] = ack["messages"]
    assert (greeting["username"], greeting["characterId"]) == ("Tom", "tom")

    # Nobody named: the last speaker (Tom, who greeted) answers, once.
    await ann.call("sendMessage", {"roomId": "scene", "content": "hello there"})
    await settled(server, "scene", ann)
    assert replies(ann) == [("tom", "Tom")]

    # Named: in order of mention; Tom's answer to Mia names her, which hands her the turn,
    # and three replies in a row is the most without a person.
    mark = len(ann.seen)
    await ann.call("sendMessage", {"roomId": "scene", "content": "@Mia and tom: tea or coffee?"})
    await settled(server, "scene", ann)
    said = replies(ann, mark)
    assert said[:2] == [("mia", "Mia"), ("tom", "Tom")]
    assert said == [("mia", "Mia"), ("tom", "Tom"), ("mia", "Mia")]
    starts = [p for p in ann.of("aiStart")][-3:]
    assert [s["characterId"] for s in starts] == ["mia", "tom", "mia"]
    assert starts[1]["inReplyTo"] == starts[0]["inReplyTo"] != []  # both answer ann
    assert starts[2]["inReplyTo"] == []  # a hand-off answers Tom, not ann

    # Nobody named again: the last speaker now is Mia, in her own manner.
    mark = len(ann.seen)
    await ann.call("sendMessage", {"roomId": "scene", "content": "ok then"})
    await settled(server, "scene", ann)
    assert replies(ann, mark) == [("mia", "Mia")]

    # The host changes the reply mode: everyone answers, in cast order (then Mia's answer
    # to Tom hands the turn back to him: three in a row).
    changed = await ann.call(
        "setCast", {"roomId": "scene", "cast": ["tom", "mia"], "replyMode": "all"}
    )
    assert changed["ok"] and changed["replyMode"] == "all", changed
    mark = len(ann.seen)
    await ann.call("sendMessage", {"roomId": "scene", "content": "good morning"})
    await settled(server, "scene", ann)
    assert replies(ann, mark) == [("tom", "Tom"), ("mia", "Mia"), ("tom", "Tom")]
    one_at_a_time(ann)

    # Everyone saw the same thing: the stored transcript agrees with the live one.
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = (await http.get("/api/rooms/scene/messages?limit=200")).json()["messages"]
        ai = [(m["characterId"], m["username"]) for m in page if m["isAI"]]
        assert ai[1:] == [r for r in replies(ann)]
        md = (await http.get("/api/rooms/scene/transcript?format=markdown")).text
        assert "with Tom and Mia" in md and "**Mia**" in md and "**Tom**" in md
    await ann.sio.disconnect()


async def test_set_cast_is_recorded_and_announced(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        made = await make_room(http, "recast")
    ann = Listener(server.url, "recast", "ann")
    changes: list[dict[str, Any]] = []
    ann.sio.on("roomChanged", lambda payload: changes.append(payload))
    key = (await ann.join())["memberKey"]
    hosting = {"roomId": "recast", "username": "ann", "memberKey": key}
    hosted = await ann.call("joinRoom", {**hosting, "hostToken": made["hostToken"]})
    assert hosted["you"]["role"] == "host", hosted
    bob = Listener(server.url, "recast", "bob")
    await bob.join()
    bad = await ann.call("setCast", {"roomId": "recast", "cast": []})
    assert bad["ok"] is False and bad["error"]["code"] == "bad_request"
    unknown = await ann.call("setCast", {"roomId": "recast", "cast": ["nobody"]})
    assert unknown["error"]["code"] == "bad_request" and "nobody" in unknown["error"]["message"]
    twice = await ann.call("setCast", {"roomId": "recast", "cast": ["mia", "mia"]})
    assert twice["error"]["code"] == "bad_request"
    outsider = Listener(server.url, "elsewhere", "eve")
    await outsider.join()
    refused = await outsider.call("setCast", {"roomId": "recast", "cast": ["mia"]})
    assert refused["error"]["code"] == "forbidden"

    member = await bob.call("setCast", {"roomId": "recast", "cast": ["mia"]})
    assert member["error"]["code"] == "forbidden"  # only the host recasts a room
    done = await ann.call("setCast", {"roomId": "recast", "cast": ["mia"]})
    assert done["ok"], done
    await eventually(lambda: bool(changes), what="roomChanged")
    assert changes[0]["cast"] == [
        {
            "id": "mia",
            "name": "Mia",
            "revision": 1,
            "avatarUrl": "/api/characters/mia/avatar?revision=1",
        }
    ]
    assert (changes[0]["replyMode"], changes[0]["version"]) == ("single", done["version"])
    log = await server.services.store.read_stream("recast")
    last = log[-1].event
    assert isinstance(last, RoomCastChanged) and last.by == "ann"
    # The one left in the cast answers, with nothing else to go by.
    mark = len(ann.seen)
    await ann.call("sendMessage", {"roomId": "recast", "content": "who is here?"})
    await settled(server, "recast")
    assert replies(ann, mark) == [("mia", "Mia")]
    rejoin = await ann.call("joinRoom", {"roomId": "recast", "username": "ann"})
    assert [c["id"] for c in rejoin["cast"]] == ["mia"]
    for member in (ann, bob, outsider):
        await member.sio.disconnect()


async def test_a_room_keeps_its_revision_when_the_library_changes(
    server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        await make_room(http, "kept", cast=["mia"])
        mia = (await http.get("/api/characters/mia")).json()
        edited = {
            "name": "Mia",
            "system_prompt": "You are Mia, but loud now.",
            "greeting": "HELLO",
        }
        assert (await http.put("/api/characters/mia", json=edited)).json()["revision"] == 2
        room = (await http.get("/api/rooms/kept")).json()
        assert [(m["id"], m["revision"]) for m in room["cast"]] == [("mia", 1)]
        fresh = await make_room(http, "fresh", cast=["mia"])
        assert [(m["id"], m["revision"]) for m in fresh["cast"]] == [("mia", 2)]
        messages = (await http.get("/api/rooms/fresh/messages")).json()["messages"]
        assert messages[0]["content"].startswith("HELLO")
        # The old room's replies still use revision 1's prompt.
        old = await server.services.conversation.character_of(CastMember("mia", "Mia", 1))
        assert old.system_prompt == mia["systemPrompt"] != edited["system_prompt"]

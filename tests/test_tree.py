"""The tree over the real python-socketio client, a real server and a fake OpenAI-compatible
model that records every request: regenerate and choose, edit, delete for real, fork."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ai.conftest import LLM_KEY
from tests.conftest import RunningServer, serve
from tests.fakes.llm import FakeLLM, openai_stream
from tests.support.polling import eventually
from tests.support.room_client import RoomClient
from tests.support.settings import make_settings
from tomchat.store.rebuild import rebuild_projections
from tomchat.wire.outgoing import iso

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM(authorization=f"Bearer {LLM_KEY}") as fake:
        fake.default = openai_stream(["Noted."])
        yield fake


@pytest.fixture
async def server(tmp_path: Path, llm: FakeLLM) -> AsyncIterator[RunningServer]:
    env = {
        "TOMCHAT_LLM": "openai",
        "TOMCHAT_LLM_BASE_URL": f"{llm.url}/v1",
        "TOMCHAT_LLM_API_KEY": LLM_KEY,
    }
    async with serve(make_settings(tmp_path, env=env)) as running:
        yield running


async def member(server: RunningServer, room: str, name: str) -> RoomClient:
    client = RoomClient(server.url, room, name)
    await client.connect()
    await client.join()
    return client


async def head(server: RunningServer, room: str) -> int:
    return await server.services.store.head(room) or 0


def replied(n: int) -> Any:
    """``n`` replies finished (the greeting is one)."""
    return lambda c: sum(1 for x in c.lines.values() if x.is_ai and x.status != "streaming") >= n


def contexts(llm: FakeLLM, since: int = 0) -> list[list[dict[str, str]]]:
    return [r.json()["messages"] for r in llm.requests[since:]]


async def refused(client: RoomClient, event: str, payload: dict[str, Any], code: str) -> None:
    before = await head_server(client)
    ack = await client.call(event, payload)
    assert ack["ok"] is False and ack["error"]["code"] == code, ack
    assert ack["error"]["message"]
    assert await head_server(client) == before, "a refusal appends nothing"


async def head_server(client: RoomClient) -> int:
    async with httpx.AsyncClient(base_url=client.url) as http:
        return int((await http.get(f"/api/rooms/{client.room_id}")).json()["version"])


async def test_regenerate_and_choose_reach_everyone_and_only_the_chosen_is_context(
    server: RunningServer, llm: FakeLLM
) -> None:
    ann, bob = await member(server, "t", "ann"), await member(server, "t", "bob")
    [greeting] = list(ann.lines)
    llm.script(openai_stream(["First answer."]))
    assert (await ann.send("hello"))["ok"]
    await ann.wait_for(replied(2))
    await bob.wait_for(replied(2))
    first = next(x.id for x in ann.lines.values() if x.content == "First answer.")

    await refused(ann, "regenerate", {"roomId": "t", "messageId": "nope"}, "not_found")
    await refused(ann, "regenerate", {"roomId": "t", "messageId": greeting}, "not_latest")
    await refused(ann, "chooseAlternative", {"roomId": "t", "messageId": first}, "not_found")

    # A new alternative streams live to both; while it streams, another is refused.
    llm.script(openai_stream(["Second ", "answer."], delay=0.4))
    again = await bob.call("regenerate", {"roomId": "t", "messageId": first})
    assert again["ok"], again
    second = again["messageId"]
    await refused(ann, "regenerate", {"roomId": "t", "messageId": first}, "busy")
    await ann.wait_for(replied(3))
    await bob.wait_for(replied(3))
    for c in (ann, bob):
        assert c.lines[second].alternative_of == first and c.lines[second].chosen
        assert not c.lines[first].chosen and c.lines[second].content == "Second answer."
    # The alternative answered what the first reply answered, without the first reply.
    regenerated = contexts(llm)[-1]
    assert regenerated[-1] == {"role": "user", "content": "ann: hello"}
    assert all(m["content"] != "First answer." for m in regenerated)

    # The first is chosen again, by anyone, for everyone.
    chosen = await ann.call("chooseAlternative", {"roomId": "t", "messageId": first})
    assert chosen["ok"] and chosen["messageId"] == first
    await bob.wait_for(lambda c: c.lines[first].chosen)
    carol = await member(server, "t", "carol")
    dave = RoomClient(server.url, "t", "dave")
    await dave.connect()
    dave.version = 1  # as if it had seen room.created: it catches up from the events
    await dave.join(since=1)
    assert ann.tree() == bob.tree() == carol.tree() == dave.tree()
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = (await http.get("/api/rooms/t/messages")).json()["messages"]
    by_id = {m["id"]: m for m in page}
    assert by_id[first]["alternatives"] == [first, second] and by_id[first]["chosen"]
    assert by_id[second]["alternativeOf"] == first and not by_id[second]["chosen"]

    # The next reply's context holds the chosen alternative only.
    seen = len(llm.requests)
    await ann.send("and then?")
    await ann.wait_for(replied(4))
    [later] = contexts(llm, seen)
    assert [m["content"] for m in later[1:]] == [
        ann.lines[greeting].content,
        "ann: hello",
        "First answer.",
        "ann: and then?",
    ]
    # Replay shows what happened: both alternatives and the choice, in order.
    log = [e.type for e in await server.services.store.read_stream("t")]
    assert log.count("reply.started") == 4 and "reply.chosen" in log
    for c in (ann, bob, carol, dave):
        await c.disconnect()


async def test_two_regenerates_racing_one_wins_the_other_is_told(
    server: RunningServer, llm: FakeLLM
) -> None:
    ann, bob = await member(server, "race", "ann"), await member(server, "race", "bob")
    await ann.send("hi")
    await ann.wait_for(replied(2))
    reply = [x.id for x in ann.lines.values() if x.is_ai][-1]
    before = await head(server, "race")
    llm.default = openai_stream(["Again."], delay=0.2)
    acks = await asyncio.gather(
        ann.call("regenerate", {"roomId": "race", "messageId": reply}),
        bob.call("regenerate", {"roomId": "race", "messageId": reply}),
    )
    won = [a for a in acks if a["ok"]]
    lost = [a for a in acks if not a["ok"]]
    assert len(won) == 1 and len(lost) == 1, acks
    assert lost[0]["error"]["code"] in {"busy", "conflict"}
    await ann.wait_for(replied(3))
    log = await server.services.store.read_stream("race", before)
    assert [e.type for e in log] == ["reply.started", "reply.chunk", "reply.completed"]
    await ann.disconnect()
    await bob.disconnect()


MARKER = "zanzibarite"


async def test_edit_and_delete_for_real(
    server: RunningServer, llm: FakeLLM, tmp_path: Path
) -> None:
    # Made over REST: whoever joins is a member, not the host (a room made by joining is
    # its creator's), until the test names a host below.
    async with httpx.AsyncClient(base_url=server.url) as http:
        made = await http.post("/api/rooms", json={"name": "Deletions", "id": "d"})
        assert made.status_code == 201, made.text
    ann, bob = await member(server, "d", "ann"), await member(server, "d", "bob")
    llm.script(openai_stream([f"So, {MARKER}."]))
    sent = await ann.send(f"my {MARKER} secret")
    await ann.wait_for(replied(2))
    secret = sent["messageId"]
    reply = [x.id for x in ann.lines.values() if x.is_ai][-1]
    # A voice message whose recording is on disk.
    media = server.services.media
    name = await media.save(b"OggS" + b"\0" * 100, "ogg")
    url = media.url(name)
    voiced = await server.services.conversation.post_message(
        "d", "ann", f"{MARKER} by voice", source="voice", audio_url=url
    )
    await ann.wait_for(replied(3))
    assert media.exists(name)

    # Only the author edits; only the author or the host deletes.
    edit = {"roomId": "d", "messageId": secret, "content": f"my {MARKER} secret, edited"}
    await refused(bob, "editMessage", edit, "forbidden")
    await refused(bob, "editMessage", {**edit, "messageId": reply}, "forbidden")
    await refused(bob, "deleteMessage", {"roomId": "d", "messageId": secret}, "forbidden")
    await refused(ann, "deleteMessage", {"roomId": "d", "messageId": reply}, "forbidden")
    await refused(ann, "editMessage", {**edit, "messageId": "nope"}, "not_found")
    await refused(ann, "editMessage", {**edit, "content": "  "}, "bad_request")
    edited = await ann.call("editMessage", edit)
    assert edited["ok"] and edited["messageId"] == secret
    await bob.wait_for(lambda c: c.lines[secret].edited)
    assert bob.lines[secret].content == f"my {MARKER} secret, edited"

    deleted = await ann.call("deleteMessage", {"roomId": "d", "messageId": secret})
    assert deleted["ok"]
    await ann.call("deleteMessage", {"roomId": "d", "messageId": voiced.event.message_id})  # type: ignore[union-attr]

    class BobHosts:
        def is_host(self, room_id: str, sid: str) -> bool:
            return server.services.presence.username(sid, room_id) == "bob"

    server.services.live.roles = BobHosts()
    by_host = await bob.call(
        "deleteMessage", {"roomId": "d", "messageId": reply, "reason": "spoilers"}
    )
    assert by_host["ok"], by_host
    await refused(bob, "deleteMessage", {"roomId": "d", "messageId": reply}, "not_found")
    for c in (ann, bob):
        await c.wait_for(lambda c: c.lines[reply].deleted)
        assert all(MARKER not in x.content for x in c.lines.values())
        assert c.lines[secret].deleted and c.lines[secret].content == ""
    await eventually(lambda: not media.exists(name), what="the recording is deleted")

    # The words are gone from every read path.
    late = await member(server, "d", "carol")
    assert MARKER not in repr(late.tree())
    caught = await late.call("resync", {"roomId": "d", "since": 0})
    assert caught["ok"] and MARKER not in repr(caught)
    async with httpx.AsyncClient(base_url=server.url) as http:
        bodies = [
            (await http.get("/api/rooms/d/messages")).text,
            (await http.get("/api/rooms/d/events")).text,
            (
                await http.get("/api/rooms/d/events", headers={"Accept": "application/x-ndjson"})
            ).text,
            (await http.get("/api/rooms/d/replay", params={"speed": 1000})).text,
        ]
        for fmt in ("json", "jsonl", "markdown", "text"):
            export = await http.get("/api/rooms/d/transcript", params={"format": fmt})
            assert export.status_code == 200
            bodies.append(export.text)
    assert "message.redacted" in bodies[1] and "spoilers" in bodies[1]
    for body in bodies:
        assert MARKER not in body
    seen = len(llm.requests)
    await ann.send("what did I say?")
    await ann.wait_for(replied(4))
    assert llm.requests[seen:] and all(MARKER not in r.body.decode() for r in llm.requests[seen:])

    # Nor in the database file or its WAL, once checkpointed.
    db_file = tmp_path / "tomchat.db"
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    for path in (db_file, Path(f"{db_file}-wal")):
        if path.exists():
            assert MARKER.encode() not in path.read_bytes(), path

    # The projection rebuilt from the log is what it is.
    report = await rebuild_projections(server.services.db, check_only=True)
    assert report.differences == 0 and report.rows > 0
    for c in (ann, bob, late):
        await c.disconnect()


async def test_fork_copies_the_visible_transcript_at_a_version(
    server: RunningServer, llm: FakeLLM
) -> None:
    ann = await member(server, "src", "ann")
    await ann.send("one")
    await ann.wait_for(replied(2))
    first = [x.id for x in ann.lines.values() if x.is_ai][-1]
    llm.script(openai_stream(["Other."]))
    assert (await ann.call("regenerate", {"roomId": "src", "messageId": first}))["ok"]
    await ann.wait_for(replied(3))
    assert (await ann.call("chooseAlternative", {"roomId": "src", "messageId": first}))["ok"]
    gone = await ann.send("two (to be deleted)")
    await ann.wait_for(replied(4))
    at = await head(server, "src")
    await ann.send("three, after the fork point")
    await ann.wait_for(replied(5))
    assert (await ann.call("deleteMessage", {"roomId": "src", "messageId": gone["messageId"]}))[
        "ok"
    ]

    rows, _ = await server.services.reader.page("src", None, 200)
    visible = [r for r in rows if r.first_version <= at and r.visible]
    expected = [(r.author, r.is_ai, r.content) for r in visible]
    async with httpx.AsyncClient(base_url=server.url) as http:
        made = await http.post("/api/rooms/src/fork", json={"at": at, "name": "What if"})
        assert made.status_code == 201, made.text
        room = made.json()
        assert room["name"] == "What if" and room["token"] is None
        log = (await http.get(f"/api/rooms/{room['id']}/events")).json()["events"]
        page = (await http.get(f"/api/rooms/{room['id']}/messages")).json()["messages"]
        # Refusals: past the head, no such room, a bad body.
        too_far = await http.post("/api/rooms/src/fork", json={"at": 10_000})
        assert too_far.status_code == 400
        assert too_far.headers["content-type"].startswith("application/problem+json")
        assert (await http.post("/api/rooms/none/fork", json={})).status_code == 404
        assert (await http.post("/api/rooms/src/fork", json={"at": 0})).status_code == 400
        private = await http.post("/api/rooms/src/fork", json={"private": True})
        assert private.status_code == 201 and private.json()["token"]
        hidden = private.json()["id"]
        assert (await http.get(f"/api/rooms/{hidden}/messages")).status_code == 404
        shown = await http.get(
            f"/api/rooms/{hidden}/messages", headers={"X-Room-Token": private.json()["token"]}
        )
        assert shown.status_code == 200
    assert log[0]["type"] == "room.forked"
    assert log[0]["data"]["from_room"] == "src" and log[0]["data"]["at_version"] == at
    assert [e["type"] for e in log[1:]] == ["message.imported"] * len(expected)
    assert [(m["username"], m["isAI"], m["content"]) for m in page] == expected
    assert "Other." not in repr(page) and "two (to be deleted)" not in repr(page)
    # Original authors and times.
    assert [m["timestamp"] for m in page] == [iso(r.created_at) for r in visible]

    # Then it lives like any room.
    carl = await member(server, room["id"], "carl")
    assert [line.content for line in carl.lines.values()] == [c for _, _, c in expected]
    await carl.send("hello, fork")
    await carl.wait_for(lambda c: [x.content for x in c.lines.values()][-1] == "Noted.")
    assert await server.services.store.head("src") > at
    for c in (ann, carl):
        await c.disconnect()

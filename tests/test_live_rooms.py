"""Live rooms over a real server and the real python-socketio client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import RunningServer
from tests.support.room_client import RoomClient
from tomchat.ai.demo import compose_reply
from tomchat.ai.protocols import ChatTurn
from tomchat.store.schema import events

pytestmark = pytest.mark.timeout(60)


async def client(server: RunningServer, room: str, user: str) -> RoomClient:
    c = RoomClient(server.url, room, user)
    await c.connect()
    return c


async def table(server: RunningServer, room: str) -> dict[str, tuple[str, bool, str, str]]:
    rows, _ = await server.services.reader.page(room, None, 200)
    return {r.id: (r.author, r.is_ai, r.content, r.status) for r in rows}


def as_table(c: RoomClient) -> dict[str, tuple[str, bool, str, str]]:
    return {x.id: (x.author, x.is_ai, x.content, x.status) for x in c.lines.values()}


async def event_count(server: RunningServer) -> int:
    async with server.services.db.reader.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(events))).scalar_one())


def reply_id(c: RoomClient, status: str | None = None) -> str:
    ids = [x.id for x in c.lines.values() if x.is_ai and (status is None or x.status == status)]
    return ids[-1]


async def test_join_creates_the_room_with_the_demo_greeting(server: RunningServer) -> None:
    ann = await client(server, "lobby", "ann")
    ack = await ann.join()
    assert ack["version"] == 3 and ack["hasMore"] is False and ack["streaming"] == []
    [greeting] = ack["messages"]
    assert greeting["isAI"] and greeting["username"] == "Tom"
    assert "demo" in greeting["content"]
    await ann.wait_for(lambda c: c.presence == ["ann"])
    await ann.disconnect()


async def test_reply_streams_to_everyone_and_matches_the_table(server: RunningServer) -> None:
    ann, bob = await client(server, "r1", "ann"), await client(server, "r1", "bob")
    await ann.join()
    await bob.join()
    sent = await ann.send("What do you know about sailing boats?")
    assert sent["ok"] and sent["version"] == 4
    expected = compose_reply([ChatTurn("user", "ann: What do you know about sailing boats?")])
    for c in (ann, bob):
        await c.wait_for(
            lambda c: any(
                x.is_ai and x.status == "complete" and x.content == expected
                for x in c.lines.values()
            )
        )
        assert c.applied == list(range(3, c.version + 1))
        assert as_table(c) == await table(server, "r1")
    await ann.disconnect()
    await bob.disconnect()


async def test_late_joiner_mid_reply_gets_exactly_the_reply(server: RunningServer) -> None:
    ann = await client(server, "r2", "ann")
    await ann.join()
    await ann.send("Tell me a long story about dragons and castles")
    await ann.wait_for(
        lambda c: (
            sum(1 for x in c.lines.values() if x.status == "streaming" and len(x.content) > 20) == 1
        )
    )
    bob = await client(server, "r2", "bob")
    ack = await bob.join()
    [streaming] = ack["streaming"]
    assert streaming["content"], "the reply so far comes with the snapshot"
    assert ann.text_of(streaming["messageId"]).startswith(streaming["content"][:10])
    await bob.wait_for(lambda c: c.status_of(streaming["messageId"]) == "complete")
    await ann.wait_for(lambda c: c.status_of(streaming["messageId"]) == "complete")
    assert bob.text_of(streaming["messageId"]) == ann.text_of(streaming["messageId"])
    assert bob.applied == list(range(ack["version"], bob.version + 1)), "contiguous, no duplicate"
    assert as_table(bob) == await table(server, "r2")
    await ann.disconnect()
    await bob.disconnect()


async def test_rejoin_with_since_gets_the_rest_no_more_no_less(server: RunningServer) -> None:
    ann, bob = await client(server, "r3", "ann"), await client(server, "r3", "bob")
    await ann.join()
    await bob.join()
    await ann.send("Explain how the tides work please")
    await bob.wait_for(
        lambda c: any(x.status == "streaming" and x.content for x in c.lines.values())
    )
    await bob.disconnect()
    left_at = bob.version
    await asyncio.sleep(0.3)  # the reply goes on without bob
    ack = await bob.reconnect()
    assert ack["events"][0]["version"] == left_at + 1
    assert [e["version"] for e in ack["events"]] == list(range(left_at + 1, ack["version"] + 1))
    message_id = reply_id(ann)
    await ann.wait_for(lambda c: c.status_of(message_id) == "complete")
    await bob.wait_for(lambda c: c.status_of(message_id) == "complete")
    assert bob.text_of(message_id) == ann.text_of(message_id)
    assert bob.applied == list(range(3, bob.version + 1))
    assert as_table(bob) == await table(server, "r3")
    await ann.disconnect()
    await bob.disconnect()


async def test_stop_keeps_the_partial_text(server: RunningServer) -> None:
    ann = await client(server, "r4", "ann")
    await ann.join()
    await ann.send("Give me a very long speech about the ocean")
    await ann.wait_for(
        lambda c: any(x.status == "streaming" and len(x.content) > 10 for x in c.lines.values())
    )
    message_id = reply_id(ann, "streaming")
    ack = await ann.call("stopGeneration", {"roomId": "r4", "messageId": message_id})
    assert ack == {"ok": True}
    await ann.wait_for(lambda c: c.status_of(message_id) == "stopped")
    partial = ann.text_of(message_id)
    full = compose_reply([ChatTurn("user", "ann: Give me a very long speech about the ocean")])
    assert partial and full.startswith(partial) and partial != full
    assert (await table(server, "r4"))[message_id] == ("Tom", True, partial, "stopped")
    wrong = await ann.call("stopGeneration", {"roomId": "r4", "messageId": "nope"})
    assert wrong["error"]["code"] == "not_found"
    await ann.disconnect()


async def test_messages_during_a_reply_are_answered_together(server: RunningServer) -> None:
    ann = await client(server, "r5", "ann")
    await ann.join()
    first = await ann.send("first question about trains")
    await ann.wait_for(lambda c: any(x.status == "streaming" for x in c.lines.values()))
    second = await ann.send("second question about planes")
    third = await ann.send("third question about rockets")
    await ann.wait_for(
        lambda c: sum(1 for x in c.lines.values() if x.is_ai and x.status == "complete") == 3,
        timeout=30,
    )
    started = [
        e for e in await server.services.store.read_stream("r5") if e.type == "reply.started"
    ]
    assert [list(e.event.in_reply_to) for e in started[1:]] == [  # type: ignore[union-attr]
        [first["messageId"]],
        [second["messageId"], third["messageId"]],
    ]
    await ann.disconnect()


async def test_client_id_makes_sending_idempotent(server: RunningServer) -> None:
    ann = await client(server, "r6", "ann")
    await ann.join()
    one = await ann.send("hello there", client_id="abc-1")
    before = await event_count(server)
    two = await ann.send("hello there", client_id="abc-1")
    assert one == two
    assert await event_count(server) == before or True  # the reply may be writing meanwhile
    posted = [
        e for e in await server.services.store.read_stream("r6") if e.type == "message.posted"
    ]
    assert len(posted) == 1
    await ann.disconnect()


BAD: list[tuple[str, Any, str]] = [
    ("joinRoom", None, "bad_request"),
    ("joinRoom", "lobby", "bad_request"),
    ("joinRoom", {"roomId": "bad room!", "username": "ann"}, "bad_request"),
    ("joinRoom", {"roomId": "x" * 65, "username": "ann"}, "bad_request"),
    ("joinRoom", {"roomId": "ok", "username": ""}, "bad_request"),
    ("joinRoom", {"roomId": "ok", "username": "a" * 33}, "bad_request"),
    ("joinRoom", {"roomId": "ok", "username": "bell\x07"}, "bad_request"),
    ("joinRoom", {"roomId": "ok", "username": ["ann"]}, "bad_request"),
    ("joinRoom", {"roomId": "ok", "username": "ann", "since": "3"}, "bad_request"),
    ("sendMessage", {"roomId": "v", "content": "x" * 4001}, "too_large"),
    ("sendMessage", {"roomId": "v", "content": "   "}, "bad_request"),
    ("sendMessage", {"roomId": "v", "content": {"$gt": ""}}, "bad_request"),
    ("sendMessage", {"roomId": "v"}, "bad_request"),
    ("sendMessage", {"roomId": "elsewhere", "content": "hi"}, "forbidden"),
    ("stopGeneration", {"roomId": "v"}, "bad_request"),
    ("resync", {"roomId": "v", "since": -1}, "bad_request"),
    ("resync", {"roomId": "elsewhere", "since": 0}, "forbidden"),
    ("leaveRoom", [], "bad_request"),
    ("noSuchEvent", {"x": 1}, "bad_request"),
]


async def test_bad_input_is_refused_and_appends_nothing(server: RunningServer) -> None:
    ann = await client(server, "v", "ann")
    await ann.join()
    before = await event_count(server)
    for event, payload, code in BAD:
        ack = await ann.call(event, payload)
        assert ack["ok"] is False, (event, payload)
        assert ack["error"]["code"] == code, (event, payload, ack)
        assert ack["error"]["message"]
    assert await event_count(server) == before
    assert (await ann.send("still here?"))["ok"]
    await ann.disconnect()


async def test_resync_answers_like_join_with_since(server: RunningServer) -> None:
    ann = await client(server, "r7", "ann")
    await ann.join()
    ack = await ann.call("resync", {"roomId": "r7", "since": 1})
    assert ack["ok"] and [e["version"] for e in ack["events"]] == [2, 3]
    assert [e["type"] for e in ack["events"]] == ["reply.started", "reply.completed"]
    ahead = await ann.call("resync", {"roomId": "r7", "since": 99})
    assert ahead["reset"] is True and ahead["version"] == 3
    await ann.disconnect()


async def test_leave_and_presence(server: RunningServer) -> None:
    ann, bob = await client(server, "r8", "ann"), await client(server, "r8", "bob")
    await ann.join()
    await bob.join()
    await ann.wait_for(lambda c: c.presence == ["ann", "bob"])
    assert await bob.call("leaveRoom", {"roomId": "r8"}) == {"ok": True}
    await ann.wait_for(lambda c: c.presence == ["ann"])
    assert (await bob.send("not a member now"))["error"]["code"] == "forbidden"
    await bob.join()
    await ann.wait_for(lambda c: c.presence == ["ann", "bob"])
    await bob.disconnect()
    await ann.wait_for(lambda c: c.presence == ["ann"])
    await ann.disconnect()

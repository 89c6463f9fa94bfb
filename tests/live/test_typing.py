"""``typing``: "Alice is typing…" for the others in the room, over a real server and the real
python-socketio client. Ephemeral: acked, passed on, never logged."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import RunningServer
from tests.support.room_client import RoomClient
from tomchat.store.schema import events

pytestmark = pytest.mark.timeout(60)


class Typist(RoomClient):
    """A room client that also keeps every ``typing`` notice it is sent, in order."""

    typed: list[dict[str, Any]]

    async def connect(self) -> None:
        self.typed = []

        async def on_typing(payload: dict[str, Any]) -> None:
            self.typed.append(payload)
            self._changed.set()

        self.sio.on("typing", on_typing)
        await super().connect()

    async def typing(self, room_id: str | None = None) -> dict[str, Any]:
        return await self.call("typing", {"roomId": room_id or self.room_id})

    def typists(self) -> list[str]:
        return [p["username"] for p in self.typed]


async def typist(server: RunningServer, room: str, user: str, *, join: bool = True) -> Typist:
    c = Typist(server.url, room, user)
    await c.connect()
    if join:
        await c.join()
    return c


async def event_count(server: RunningServer) -> int:
    async with server.services.db.reader.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(events))).scalar_one())


async def test_the_others_in_the_room_see_who_types_and_nothing_is_logged(
    server: RunningServer,
) -> None:
    ann, bob, cat = [await typist(server, "t1", name) for name in ("ann", "bob", "cat")]
    # Two people in another room: the notice must not leak there.
    dan, eve = await typist(server, "t2", "dan"), await typist(server, "t2", "eve")
    before = await event_count(server)
    async with httpx.AsyncClient(base_url=server.url) as http:
        log_before = (await http.get("/api/rooms/t1/events")).json()

        assert await ann.typing() == {"ok": True}
        for c in (bob, cat):
            await c.wait_for(lambda c: c.typed)
            assert c.typed == [{"roomId": "t1", "username": "ann"}]

        # Markers sent after ann's notice: one connection's packets arrive in order, so had
        # ann (or the other room) been sent hers, it would be there before the marker.
        assert await bob.typing() == {"ok": True}
        assert await eve.typing() == {"ok": True}
        await ann.wait_for(lambda c: c.typed)
        await dan.wait_for(lambda c: c.typed)
        assert ann.typed == [{"roomId": "t1", "username": "bob"}]
        assert dan.typed == [{"roomId": "t2", "username": "eve"}]
        await cat.wait_for(lambda c: len(c.typed) == 2)
        assert cat.typists() == ["ann", "bob"]

        assert await event_count(server) == before
        log_after = (await http.get("/api/rooms/t1/events")).json()
        assert log_after == log_before
        assert all(e["type"] != "typing" for e in log_after["events"])
    for c in (ann, bob, cat, dan, eve):
        await c.disconnect()


async def test_only_members_may_say_they_type(server: RunningServer) -> None:
    ann = await typist(server, "t3", "ann")
    stranger = await typist(server, "t3", "zed", join=False)
    before = await event_count(server)

    refused = await stranger.typing()
    assert refused["ok"] is False
    assert refused["error"]["code"] == "forbidden"
    assert "join room 't3' first" in refused["error"]["message"]
    # A member of one room is a stranger to another.
    assert (await ann.typing("t4"))["error"]["code"] == "forbidden"
    for bad in ({}, {"roomId": "no spaces"}, ["t3"], {"roomId": 3}):
        ack = await ann.call("typing", bad)
        assert ack["ok"] is False and ack["error"]["code"] == "bad_request", (bad, ack)
        assert ack["error"]["message"]

    # After leaving, the same socket is refused again.
    assert await ann.call("leaveRoom", {"roomId": "t3"}) == {"ok": True}
    assert (await ann.typing())["error"]["code"] == "forbidden"
    assert await event_count(server) == before
    await ann.disconnect()
    await stranger.disconnect()


async def test_a_burst_is_acked_but_passed_on_once_per_two_seconds(server: RunningServer) -> None:
    ann, bob = await typist(server, "t5", "ann"), await typist(server, "t5", "bob")
    acks = [await ann.typing() for _ in range(6)]
    assert acks == [{"ok": True}] * 6
    # bob's own notice is the marker: ann's whole burst was answered before it was sent.
    await bob.typing()
    await ann.wait_for(lambda c: c.typed)
    await bob.wait_for(lambda c: c.typed)
    assert bob.typists() == ["ann"]

    await asyncio.sleep(2.1)
    assert await ann.typing() == {"ok": True}
    await bob.wait_for(lambda c: len(c.typed) == 2)
    assert bob.typists() == ["ann", "ann"]
    await ann.disconnect()
    await bob.disconnect()

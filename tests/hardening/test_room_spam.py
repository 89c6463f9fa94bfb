"""Room spam and the lobby: creating rooms is rate-limited per connection and per address on
both edges, ``GET /api/rooms`` pages with an opaque cursor, and a private room's id can be
neither probed nor squatted through ``joinRoom``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import RunningServer
from tests.hardening.conftest import GENEROUS, StartServer, call, connect, event_count
from tomchat.domain.limits import Rate
from tomchat.store.schema import streams

pytestmark = pytest.mark.timeout(60)

FEW_ROOMS = replace(GENEROUS, rooms=Rate(burst=4, per_second=0.01))


async def room_count(server: RunningServer) -> int:
    async with server.services.db.reader.connect() as conn:
        query = (
            select(func.count())
            .select_from(streams)
            # Rooms only: the character library's streams share the table.
            .where(streams.c.version > 0, ~streams.c.room_id.startswith("character:"))
        )
        return int((await conn.execute(query)).scalar_one())


async def test_rest_room_creation_is_limited_per_address(start: StartServer) -> None:
    server = await start(live_limits=FEW_ROOMS)
    async with httpx.AsyncClient(base_url=server.url) as http:
        made = [await http.post("/api/rooms", json={"name": f"Spam {i}"}) for i in range(4)]
        assert [r.status_code for r in made] == [201] * 4
        refused = await http.post("/api/rooms", json={"name": "One too many"})
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        body = refused.json()
        assert body["status"] == 429 and body["title"] == "Too Many Requests"
        assert body["retryAfter"] > 0 and "new rooms" in body["detail"]
        # A taken id costs an attempt too (probing ids is creating rooms).
        assert (await http.post("/api/rooms", json={"name": "x", "id": "Spam"})).status_code == 429
    assert await room_count(server) == 4


async def test_join_room_creation_is_limited_per_connection_and_address(
    start: StartServer,
) -> None:
    server = await start(live_limits=FEW_ROOMS)
    sio = await connect(server)
    for i in range(4):
        ack = await call(sio, "joinRoom", {"roomId": f"spam-{i}", "username": "eve"})
        assert ack["ok"] and ack["version"] == 3, ack
    ack = await call(sio, "joinRoom", {"roomId": "spam-4", "username": "eve"})
    assert ack["ok"] is False and ack["error"]["code"] == "rate_limited", ack
    assert ack["error"]["retryAfter"] > 0
    # Rooms that exist are joined as ever: only creating is limited.
    again = await call(sio, "joinRoom", {"roomId": "spam-0", "username": "eve"})
    assert again["ok"] and again["version"] == 3
    # A new connection (same address) has no new budget, nor does REST from that address.
    other = await connect(server)
    ack = await call(other, "joinRoom", {"roomId": "spam-5", "username": "mallory"})
    assert ack["error"]["code"] == "rate_limited", ack
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.post("/api/rooms", json={"name": "Also"})).status_code == 429
    assert await room_count(server) == 4
    for client in (sio, other):
        await client.disconnect()


async def test_a_private_id_answers_like_an_id_that_may_not_be_created(
    start: StartServer,
) -> None:
    server = await start(live_limits=GENEROUS)
    async with httpx.AsyncClient(base_url=server.url) as http:
        made = (await http.post("/api/rooms", json={"name": "Vault", "private": True})).json()
        room_id, token = made["id"], made["token"]
        # The id of a private room never becomes a public room through REST either.
        squat = await http.post("/api/rooms", json={"name": "Mine now", "id": room_id})
        assert squat.status_code == 409
    before = (await event_count(server), await room_count(server))
    sio = await connect(server)

    def shape(ack: dict[str, Any], rid: str) -> Any:
        return ack["ok"], ack["error"]["code"], ack["error"]["message"].replace(rid, "ID")

    answers = []
    for rid, given in [
        (room_id, None),  # a private room, no token
        (room_id, "wrong-token"),  # a private room, wrong token
        ("never-was", "some-token"),  # an unknown id with an invite token: not created
    ]:
        payload: dict[str, Any] = {"roomId": rid, "username": "eve"}
        if given is not None:
            payload["token"] = given
        answers.append(shape(await call(sio, "joinRoom", payload), rid))
    assert answers[0] == answers[1] == answers[2], answers
    assert answers[0][:2] == (False, "not_found")
    assert (await event_count(server), await room_count(server)) == before

    # A private room whose access row outlives its log (deleted, or a creation that failed
    # half way) is still not free for the taking.
    await server.services.access.create_private_room(
        server.services.conversation, "reserved", "Reserved"
    )
    async with server.services.db.writer.begin() as conn:
        await conn.execute(streams.delete().where(streams.c.room_id == "reserved"))
    ack = await call(sio, "joinRoom", {"roomId": "reserved", "username": "eve"})
    assert shape(ack, "reserved") == answers[0]
    assert await server.services.reader.room("reserved") is None

    # With its token the private room is joined; an unknown id with no token is created.
    ok = await call(sio, "joinRoom", {"roomId": room_id, "username": "ann", "token": token})
    assert ok["ok"] and ok["version"] == 3
    fresh = await call(sio, "joinRoom", {"roomId": "brand-new", "username": "ann"})
    assert fresh["ok"] and fresh["version"] == 3
    await sio.disconnect()


async def test_the_room_list_pages_through_every_public_room(start: StartServer) -> None:
    server = await start(live_limits=GENEROUS)
    async with httpx.AsyncClient(base_url=server.url) as http:
        public = [
            (await http.post("/api/rooms", json={"name": f"Room {i}", "id": f"r{i}"})).json()["id"]
            for i in range(7)
        ]
        hidden = (await http.post("/api/rooms", json={"name": "P", "private": True})).json()["id"]
        seen: list[str] = []
        stamps: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
            response = await http.get("/api/rooms", params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            assert set(body) == {"rooms", "next"}
            seen += [r["id"] for r in body["rooms"]]
            stamps += [r["updatedAt"] for r in body["rooms"]]
            pages += 1
            cursor = body["next"]
            if cursor is None:
                break
            assert len(body["rooms"]) == 3, "a page with a next cursor is full"
        assert pages == 3
        assert sorted(seen) == sorted(public) and len(seen) == len(set(seen))
        assert hidden not in seen
        assert stamps == sorted(stamps, reverse=True), "most recently active first"
        assert seen[0] == "r6"
        whole = (await http.get("/api/rooms")).json()
        assert [r["id"] for r in whole["rooms"]] == seen and whole["next"] is None
        for bad in ("nonsense", "W10", "x" * 201):
            refused = await http.get("/api/rooms", params={"cursor": bad})
            assert refused.status_code == 400, (bad, refused.text)
        for limit in ("0", "201", "x"):
            assert (await http.get("/api/rooms", params={"limit": limit})).status_code == 400


def test_the_room_creation_rate_is_a_setting() -> None:
    from tomchat.domain.errors import ConfigError
    from tomchat.settings import Settings

    assert Settings.from_env({}).live_limits.rooms == Rate(burst=20, per_second=1 / 6)
    tuned = Settings.from_env({"TOMCHAT_NEW_ROOMS_PER_MINUTE": "30"}).live_limits
    assert tuned.rooms == Rate(burst=60, per_second=0.5)
    assert tuned.messages == Settings().live_limits.messages
    for bad in ("0", "-1", "lots"):
        with pytest.raises(ConfigError, match="TOMCHAT_NEW_ROOMS_PER_MINUTE"):
            Settings.from_env({"TOMCHAT_NEW_ROOMS_PER_MINUTE": bad})

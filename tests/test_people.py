"""People: names bound to member keys, hosts running their rooms, identity from a trusted
proxy and who stopped a reply, over a real server and the real python-socketio client."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import socketio
from sqlalchemy import select

from tests.conftest import RunningServer, ServerFactory
from tests.hardening.test_private_rooms import voice_file
from tests.support.polling import eventually
from tests.support.room_client import RoomClient
from tomchat.chat.identity import canonical_name
from tomchat.cli.main import main as cli_main
from tomchat.domain.codec import decode_event
from tomchat.domain.events import ReplyCompleted
from tomchat.store.schema import room_hosts, room_members

pytestmark = pytest.mark.timeout(60)

KEY_A = "alice-key-0123456789-abcdef"
KEY_B = "bob-key-0123456789-abcdefgh"


async def joined(
    server: RunningServer, room: str, user: str, key: str | None = None, **extra: Any
) -> RoomClient:
    c = RoomClient(server.url, room, user, member_key=key, **extra)
    await c.connect()
    await c.join()
    return c


async def try_join(server: RunningServer, payload: dict[str, Any]) -> dict[str, Any]:
    sio = socketio.AsyncClient()
    await sio.connect(server.url, transports=["websocket"], wait_timeout=10)
    try:
        ack: dict[str, Any] = await sio.call("joinRoom", payload, timeout=10)
        return ack
    finally:
        await sio.disconnect()


async def head(server: RunningServer, room: str) -> int:
    return await server.services.store.head(room)


async def room_events(http: httpx.AsyncClient, room: str, **headers: str) -> list[dict[str, Any]]:
    r = await http.get(f"/api/rooms/{room}/events", headers=headers)
    assert r.status_code == 200, r.text
    events: list[dict[str, Any]] = r.json()["events"]
    return events


def test_canonical_names_fold_case_width_invisibles_and_lookalikes() -> None:
    forms = ["ALICE", "\u0430lice", "al\u200bice", "\uff41\uff4c\uff49\uff43\uff45", "Alice "]
    assert {canonical_name(f) for f in forms} == {canonical_name("alice")}
    assert canonical_name("T0m") == canonical_name("Tom") == canonical_name("T\u03bfm")
    assert canonical_name("bob") != canonical_name("alice")


async def test_every_impersonation_is_refused_and_the_rightful_key_accepted(
    server: RunningServer,
) -> None:
    alice = await joined(server, "names", "Alice", KEY_A)
    assert alice.you == {"username": "Alice", "role": "host"}
    version = await head(server, "names")
    lookalikes = ["ALICE", "\u0430lice", "al\u200bice", "\uff41\uff4c\uff49\uff43\uff45", "Alice"]
    for name in lookalikes:
        for key in (KEY_B, None):
            payload = {"roomId": "names", "username": name}
            if key:
                payload["memberKey"] = key
            ack = await try_join(server, payload)
            assert ack["ok"] is False, (name, key, ack)
            assert ack["error"]["code"] == "forbidden"
            assert "is taken in this room" in ack["error"]["message"]
    # The character's name (and its lookalikes) belongs to the character.
    for name in ("Tom", "TOM", "T0m", "T\u03bfm"):
        ack = await try_join(server, {"roomId": "names", "username": name, "memberKey": KEY_B})
        assert ack["ok"] is False and ack["error"]["code"] == "forbidden", name
        assert "character" in ack["error"]["message"]
    # Nothing was appended by any refusal, and Alice's own key still opens her name.
    assert await head(server, "names") == version
    again = await joined(server, "names", "ALICE", KEY_A)
    assert again.you == {"username": "Alice", "role": "host"}
    for c in (alice, again):
        await c.disconnect()


async def test_a_join_without_a_key_gets_one_that_keeps_the_name(server: RunningServer) -> None:
    ann = RoomClient(server.url, "keys", "ann")
    await ann.connect()
    ack = await ann.join()
    made = ack["memberKey"]
    assert isinstance(made, str) and len(made) >= 16
    # Rejoining with the key the server made works, and no new key is made then.
    await ann.disconnect()
    back = await ann.reconnect()
    assert "memberKey" not in back and back["you"]["username"] == "ann"
    refused = await try_join(server, {"roomId": "keys", "username": "ann"})
    assert refused["ok"] is False and "taken" in refused["error"]["message"]
    await ann.disconnect()


async def test_host_acts_are_logged_with_by_and_refused_to_members(server: RunningServer) -> None:
    host = await joined(server, "hosted", "hana", KEY_A)
    bob = await joined(server, "hosted", "bob", KEY_B)
    assert host.you["role"] == "host" and bob.you["role"] == "member"
    changes: list[dict[str, Any]] = []
    bob.sio.on("roomChanged", lambda p: changes.append(p))
    kicked: list[dict[str, Any]] = []
    bob.sio.on("kicked", lambda p: kicked.append(p))

    before = await head(server, "hosted")
    for event, payload in [
        ("kickMember", {"roomId": "hosted", "username": "hana"}),
        ("lockRoom", {"roomId": "hosted", "locked": True}),
        ("renameRoom", {"roomId": "hosted", "name": "Bob's now"}),
    ]:
        ack = await bob.call(event, payload)
        assert ack["ok"] is False and ack["error"]["code"] == "forbidden", (event, ack)
        assert "host" in ack["error"]["message"]
    assert await head(server, "hosted") == before

    assert (await host.call("renameRoom", {"roomId": "hosted", "name": "Tea room"}))["ok"]
    assert (await host.call("lockRoom", {"roomId": "hosted", "locked": True}))["ok"]
    await eventually(lambda: len(changes) == 2)
    assert [(c["name"], c["locked"]) for c in changes] == [("Tea room", False), ("Tea room", True)]
    assert changes[1]["version"] == changes[0]["version"] + 1

    # Locked: a new name is refused; a bound one still comes back.
    ack = await try_join(server, {"roomId": "hosted", "username": "cy", "memberKey": KEY_B + "x"})
    assert ack["ok"] is False and "locked" in ack["error"]["message"]
    bob_tab = await joined(server, "hosted", "bob", KEY_B)
    assert bob_tab.you["role"] == "member"

    assert (await host.call("kickMember", {"roomId": "hosted", "username": "BOB"}))["ok"]
    await eventually(lambda: len(kicked) == 1)
    assert kicked == [{"roomId": "hosted", "by": "hana"}]
    await host.wait_for(lambda c: c.presence == ["hana"])
    # The kicked sockets left: they can no longer post.
    refused = await bob.send("still here?")
    assert refused["ok"] is False and refused["error"]["code"] == "forbidden"
    # Kicked, the key cannot come back, under the name or any other.
    for name in ("bob", "robert"):
        ack = await try_join(server, {"roomId": "hosted", "username": name, "memberKey": KEY_B})
        assert ack["ok"] is False and "removed" in ack["error"]["message"], name

    async with httpx.AsyncClient(base_url=server.url) as http:
        events = await room_events(http, "hosted")
        acts = [
            (e["type"], e["data"])
            for e in events
            if e["type"].startswith(("room.l", "room.r", "member"))
        ]
        assert acts == [
            ("room.renamed", {"name": "Tea room", "by": "hana"}),
            ("room.locked", {"locked": True, "by": "hana"}),
            ("member.kicked", {"username": "bob", "by": "hana"}),
        ]
        room = (await http.get("/api/rooms/hosted")).json()
        assert room["name"] == "Tea room"
    for c in (host, bob, bob_tab):
        await c.disconnect()


async def test_host_token_rotate_invite_and_the_old_token_stops_at_once(
    server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        made = (await http.post("/api/rooms", json={"name": "Den", "private": True})).json()
        room, token, host_token = made["id"], made["token"], made["hostToken"]
        assert token and host_token and token != host_token
        public = (await http.post("/api/rooms", json={"name": "Hall"})).json()

        host = await joined(server, room, "hana", KEY_A, token=token, host_token=host_token)
        member = await joined(server, room, "bob", KEY_B, token=token, host_token="wrong" * 8)
        assert host.you["role"] == "host" and member.you["role"] == "member"
        media = await voice_file(server, room)
        assert (await http.get(f"/media/{media}", params={"token": token})).status_code == 200

        # Only the host token rotates; the invite token alone does not.
        r = await http.post(f"/api/rooms/{room}/invite", headers={"X-Room-Token": token})
        assert r.status_code == 403, r.text
        assert r.json()["detail"] == "only the room's host may make a new invite link"
        r = await http.post(f"/api/rooms/{room}/invite")
        assert r.status_code == 404  # without any token a private room is not there
        r = await http.post(
            f"/api/rooms/{public['id']}/invite", headers={"X-Host-Token": public["hostToken"]}
        )
        assert r.status_code == 409
        before = await head(server, room)
        r = await http.post(f"/api/rooms/{room}/invite", headers={"X-Host-Token": host_token})
        assert r.status_code == 201, r.text
        fresh = r.json()["token"]
        assert fresh != token
        assert await head(server, room) == before  # tokens never reach the log

        old = {"X-Room-Token": token}
        assert (await http.get(f"/api/rooms/{room}", headers=old)).status_code == 404
        assert (await http.get(f"/api/rooms/{room}/replay", headers=old)).status_code == 404
        assert (await http.get(f"/media/{media}", params={"token": token})).status_code == 404
        ack = await try_join(server, {"roomId": room, "username": "cy", "token": token})
        # As any id one may not join: whether an id is private cannot be probed.
        assert ack["ok"] is False and ack["error"]["code"] == "not_found"
        new = {"X-Room-Token": fresh}
        assert (await http.get(f"/api/rooms/{room}", headers=new)).status_code == 200
        assert (await http.get(f"/media/{media}", params={"token": fresh})).status_code == 200
        late = await joined(server, room, "cy", KEY_B + "c", token=fresh)
        assert late.you == {"username": "cy", "role": "member"}
    for c in (host, member, late):
        await c.disconnect()


async def test_rooms_host_prints_a_host_token_for_an_old_room(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ann = await joined(server, "older", "ann", KEY_A)
    await ann.disconnect()
    # Rooms made before hosts existed have none: drop the creator's host row to be one.
    async with server.services.db.writer.begin() as conn:
        await conn.execute(room_hosts.delete())
    monkeypatch.setenv("TOMCHAT_DATABASE_URL", server.settings.database_url)
    await asyncio.to_thread(cli_main, ["rooms", "host", "older"])
    token = capsys.readouterr().out.strip()
    assert len(token) >= 32
    bob = await joined(server, "older", "bob", KEY_B, host_token=token)
    assert bob.you["role"] == "host"
    ann_back = await joined(server, "older", "ann", KEY_A)
    assert ann_back.you["role"] == "member"
    for c in (bob, ann_back):
        await c.disconnect()


async def test_trusted_header_only_from_a_trusted_proxy(server_factory: ServerFactory) -> None:
    env = {"TOMCHAT_TRUSTED_USER_HEADER": "X-Forwarded-User"}
    trusted = await server_factory(env=env | {"TOMCHAT_TRUSTED_PROXIES": "127.0.0.1/32"})
    untrusted = await server_factory(env=env | {"TOMCHAT_TRUSTED_PROXIES": "10.0.0.0/8, ::1"})
    header = {"X-Forwarded-User": "carol@example.org"}
    for srv, expected in ((trusted, "carol@example.org"), (untrusted, "mallory")):
        sio = socketio.AsyncClient()
        await sio.connect(srv.url, transports=["websocket"], headers=header, wait_timeout=10)
        ack = await sio.call("joinRoom", {"roomId": "sso", "username": "mallory"}, timeout=10)
        assert ack["ok"], ack
        assert ack["you"]["username"] == expected
        await sio.disconnect()
        async with httpx.AsyncClient(base_url=srv.url) as http:
            me = (await http.get("/api/me", headers=header)).json()
        assert me == {
            "username": "carol@example.org" if srv is trusted else None,
            "trustedIdentity": True,
        }
    # Behind the proxy the name needs no key, and nobody connecting directly can take it.
    ack = await try_join(trusted, {"roomId": "sso", "username": "carol@example.org"})
    assert ack["ok"] is False and "taken" in ack["error"]["message"]


async def test_anyone_may_stop_and_the_stopped_reply_says_who(server: RunningServer) -> None:
    ann = await joined(server, "stops", "ann", KEY_A)
    bob = await joined(server, "stops", "bob", KEY_B)
    completes: list[dict[str, Any]] = []
    ann.sio.on("aiComplete", lambda p: completes.append(p))
    await ann.send("Give me a very long speech about the ocean")
    await eventually(lambda: any(x.status == "streaming" for x in bob.lines.values()))
    streaming = next(x.id for x in bob.lines.values() if x.status == "streaming")
    assert (await bob.call("stopGeneration", {"roomId": "stops", "messageId": streaming}))["ok"]
    await eventually(lambda: bool(completes))
    assert completes[0]["status"] == "stopped" and completes[0]["stoppedBy"] == "bob"
    async with httpx.AsyncClient(base_url=server.url) as http:
        done = [e for e in await room_events(http, "stops") if e["type"] == "reply.completed"]
    assert done[-1]["data"]["stopped_by"] == "bob"
    for c in (ann, bob):
        await c.disconnect()


def test_reply_completed_of_the_last_release_decodes_without_stopped_by() -> None:
    old = b'{"message_id":"m1","content":"hi","status":"stopped","error":null}'
    event = decode_event("reply.completed", old)
    assert isinstance(event, ReplyCompleted)
    assert event.stopped_by is None and event.status == "stopped"


async def test_key_digests_reach_no_feed_export_or_replay(server: RunningServer) -> None:
    ann = await joined(server, "secret", "ann", KEY_A)
    bob = await joined(server, "secret", "bob")
    await ann.send("hello there")
    await eventually(
        lambda: any(
            x.is_ai and x.status == "complete" for x in ann.lines.values() if x.first_version > 3
        )
    )
    assert (await ann.call("kickMember", {"roomId": "secret", "username": "bob"}))["ok"]
    async with server.services.db.reader.connect() as conn:
        secrets = [r.key_hash for r in await conn.execute(select(room_members.c.key_hash))]
        secrets += [r.key_hash for r in await conn.execute(select(room_hosts.c.key_hash))]
    secrets += [KEY_A, str(bob.member_key)]
    assert len(secrets) >= 4
    async with httpx.AsyncClient(base_url=server.url) as http:
        bodies = [(await http.get("/api/rooms/secret/events")).text]
        bodies.append(
            (
                await http.get(
                    "/api/rooms/secret/events", headers={"Accept": "application/x-ndjson"}
                )
            ).text
        )
        for fmt in ("json", "jsonl", "markdown", "text"):
            r = await http.get("/api/rooms/secret/transcript", params={"format": fmt})
            assert r.status_code == 200
            bodies.append(r.text)
        replay = await http.get("/api/rooms/secret/replay", params={"speed": 1000, "maxPause": 0})
        bodies.append(replay.text)
    assert "member.kicked" in bodies[0] and "hello there" in bodies[2]
    for body in bodies:
        for secret in secrets:
            assert secret not in body
    for c in (ann, bob):
        await c.disconnect()

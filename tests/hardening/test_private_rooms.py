"""Private rooms: the invite token guards joining, every REST read and the room's media;
without it a private room looks exactly like a missing one. Tokens stay out of logs, media
names cannot be guessed and no path reaches outside the media folder."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import RunningServer
from tests.hardening.conftest import GENEROUS, StartServer, call, connect, event_count
from tests.support.room_client import RoomClient
from tomchat.chat.access import RoomAccess, redact, token_digest, token_matches
from tomchat.domain.events import MessagePosted
from tomchat.media.files import MediaStore
from tomchat.store.schema import room_access

pytestmark = pytest.mark.timeout(60)

MP3 = bytes.fromhex("fffb9064") + bytes(413)  # one MPEG-1 layer III frame


async def private_room(http: httpx.AsyncClient, name: str = "Secret plans") -> tuple[str, str]:
    made = await http.post("/api/rooms", json={"name": name, "private": True})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["private"] is True
    return body["id"], body["token"]


async def voice_file(server: RunningServer, room_id: str) -> str:
    """A recording posted in ``room_id``, as a voice message would leave it."""
    media = server.services.media
    assert media is not None
    name = await media.save(MP3 * 4, "mp3")
    await server.services.store.append(
        room_id,
        [
            MessagePosted(
                message_id=f"voice-{room_id}",
                username="ann",
                content="said aloud",
                source="voice",
                audio_url=media.url(name),
            )
        ],
    )
    return name


def read_paths(room_id: str) -> list[tuple[str, dict[str, str]]]:
    """Every REST read of a room (path, extra headers)."""
    base = f"/api/rooms/{room_id}"
    return [
        (base, {}),
        (f"{base}/messages", {}),
        (f"{base}/messages?limit=1", {}),
        (f"{base}/events", {}),
        (f"{base}/events", {"Accept": "application/x-ndjson"}),
        (f"{base}/transcript?format=json", {}),
        (f"{base}/transcript?format=jsonl", {}),
        (f"{base}/transcript?format=markdown", {}),
        (f"{base}/transcript?format=text", {}),
        (f"{base}/replay?speed=1000&maxPause=0", {}),
    ]


async def fetch(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> httpx.Response:
    # Streamed: the replay is an open-ended event stream; its status and first bytes suffice.
    async with http.stream("GET", path, headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
            return response
        async for _ in response.aiter_bytes():
            break
        return response


async def test_creating_a_private_room_returns_a_long_random_token(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        room_id, token = await private_room(http)
        _, other = await private_room(http)
        assert len(token) >= 43 and token != other  # 32 random bytes, base64url
        public = (await http.post("/api/rooms", json={"name": "Open"})).json()
        assert public["private"] is False and public["token"] is None
        listed = {r["id"] for r in (await http.get("/api/rooms")).json()["rooms"]}
        assert public["id"] in listed and room_id not in listed, "private rooms are not listed"
        taken = await http.post("/api/rooms", json={"name": "x", "id": room_id, "private": True})
        assert taken.status_code == 409
    async with server.services.db.reader.connect() as conn:
        stored = (await conn.execute(select(room_access))).all()
    assert {r.room_id for r in stored} >= {room_id}
    assert all(token not in (r.token_hash, r.room_id) for r in stored), "only a digest is kept"
    assert any(r.token_hash == token_digest(token) for r in stored)


async def test_every_rest_read_needs_the_token(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        room_id, token = await private_room(http)
        for path, headers in read_paths(room_id):
            missing = await fetch(http, path.replace(room_id, "no-such-room"), headers)
            assert missing.status_code == 404
            for label, extra in [
                ("no token", {}),
                ("wrong token", {"X-Room-Token": token[:-2] + "xx"}),
                ("empty token", {"X-Room-Token": ""}),
                ("another room's token", {"X-Room-Token": (await private_room(http))[1]}),
            ]:
                refused = await fetch(http, path, headers | extra)
                assert refused.status_code == 404, (path, label)
                assert refused.headers["content-type"].startswith("application/problem+json")
                # Word for word what a missing room gets, but for the id itself.
                assert refused.json()["detail"] == missing.json()["detail"].replace(
                    "no-such-room", room_id
                )
            by_header = await fetch(http, path, headers | {"X-Room-Token": token})
            assert by_header.status_code == 200, (path, by_header.status_code)
            sep = "&" if "?" in path else "?"
            by_query = await fetch(http, f"{path}{sep}token={token}", headers)
            assert by_query.status_code == 200, path
        room = (await http.get(f"/api/rooms/{room_id}", headers={"X-Room-Token": token})).json()
        assert room["private"] is True and room["version"] == 3


async def test_joining_needs_the_token_and_membership_guards_the_rest(
    server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        room_id, token = await private_room(http)
    before = await event_count(server)
    sio = await connect(server)
    for token_given in (None, "", "wrong", token.upper(), token + "x", "x" * 300):
        payload: dict[str, Any] = {"roomId": room_id, "username": "eve"}
        if token_given is not None:
            payload["token"] = token_given
        ack = await call(sio, "joinRoom", payload)
        assert ack["ok"] is False and ack["error"]["code"] in {"not_found", "bad_request"}, ack
    # Not a member: nothing else reaches the room either.
    for event, payload in [
        ("sendMessage", {"roomId": room_id, "content": "let me in"}),
        ("resync", {"roomId": room_id, "since": 0}),
        ("stopGeneration", {"roomId": room_id, "messageId": "x"}),
    ]:
        assert (await call(sio, event, payload))["error"]["code"] == "forbidden"
    assert await event_count(server) == before
    await sio.disconnect()

    ann = RoomClient(server.url, room_id, "ann", token=token)
    await ann.connect()
    ack = await ann.join()
    assert ack["version"] == 3 and ack["messages"][0]["isAI"]
    assert (await ann.send("only for invited eyes"))["ok"]
    await ann.disconnect()


async def test_media_of_a_private_room_needs_the_token(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        room_id, token = await private_room(http)
        secret = await voice_file(server, room_id)
        public_room = (await http.post("/api/rooms", json={"name": "Open"})).json()["id"]
        public = await voice_file(server, public_room)

        assert (await http.get(f"/media/{public}")).content == MP3 * 4
        for headers, params in [({}, {}), ({"X-Room-Token": "nope"}, {}), ({}, {"token": "x"})]:
            refused = await http.get(f"/media/{secret}", headers=headers, params=params)
            assert refused.status_code == 404
            assert refused.headers["content-type"].startswith("application/problem+json")
        assert (await http.get(f"/media/{secret}", headers={"X-Room-Token": token})).content == (
            MP3 * 4
        )
        by_query = await http.get(f"/media/{secret}", params={"token": token})
        assert by_query.status_code == 200 and by_query.content == MP3 * 4
        ranged = await http.get(
            f"/media/{secret}", headers={"X-Room-Token": token, "Range": "bytes=0-3"}
        )
        assert ranged.status_code == 206 and ranged.content == MP3[:4]


def test_media_names_are_unguessable(tmp_path: Any) -> None:
    names = {MediaStore.new_name("mp3") for _ in range(2000)}
    assert len(names) == 2000
    for name in names:
        stem, _, ext = name.partition(".")
        assert ext == "mp3" and len(stem) == 24  # 18 random bytes: 144 bits
        assert set(stem) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


async def raw_get(server: RunningServer, target: str) -> tuple[int, bytes]:
    """One HTTP/1.1 request with the target sent byte for byte (clients would normalise it)."""
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    status = int(response.split(b" ", 2)[1])
    return status, response.partition(b"\r\n\r\n")[2]


async def test_no_path_reaches_outside_the_media_folder(server: RunningServer) -> None:
    media_dir = server.settings.media_dir
    # Files right beside and above the media folder, with names the store would accept.
    outside = "AAAAAAAAAAAAAAAAAAAAAAAA.mp3"
    (media_dir.parent / outside).write_bytes(b"SECRET-OUTSIDE")
    (media_dir / "sub").mkdir(exist_ok=True)
    (media_dir / "sub" / outside).write_bytes(b"SECRET-NESTED")
    db_file = server.settings.database_url.split("///", 1)[1]
    targets = [
        f"/media/../{outside}",
        f"/media/..%2F{outside}",
        f"/media/..%2f{outside}",
        f"/media/%2e%2e%2F{outside}",
        f"/media/%2E%2E/{outside}",
        f"/media/..%252F{outside}",
        f"/media/..%5C{outside}",
        f"/media/..\\{outside}",
        f"/media/....//{outside}",
        f"/media/sub/{outside}",
        f"/media/sub%2F{outside}",
        f"/media/%2F{db_file.lstrip('/')}",
        f"/media/{db_file}",
        "/media//etc/passwd",
        "/media/%2Fetc%2Fpasswd",
        "/media/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        f"/media/{outside}%00.mp3",
        "/media/%00",
        "/media/.",
        "/media/..",
        "/media/~",
        f"/media/{'A' * 5000}.mp3",
    ]
    for target in targets:
        status, body = await raw_get(server, target)
        assert status in (400, 404), (target, status)
        assert b"SECRET" not in body and b"root:" not in body and b"SQLite" not in body, target


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def test_tokens_never_appear_in_logs(start: StartServer) -> None:
    server = await start(live_limits=GENEROUS)
    recorder = Recorder()
    recorder.setFormatter(logging.Formatter("%(name)s %(message)s"))
    # Every server-side logger at DEBUG, and uvicorn's access log on, as `tomchat serve`
    # runs it (the test fixture keeps uvicorn quiet). The test's own client (httpx) is not
    # the server and logs its URLs, so it stays out.
    watched = ["", "uvicorn.access", "uvicorn.error", "litestar", "tomchat", "socketio", "engineio"]
    saved = {name: logging.getLogger(name).level for name in watched}
    for name in watched:
        logging.getLogger(name).setLevel(logging.DEBUG)
    logging.getLogger("uvicorn.access").addHandler(recorder)
    logging.getLogger().addHandler(recorder)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            room_id, token = await private_room(http)
            await voice_file(server, room_id)
            for path, headers in read_paths(room_id):
                sep = "&" if "?" in path else "?"
                await fetch(http, f"{path}{sep}token={token}", headers)
                await fetch(http, path, headers | {"X-Room-Token": token})
                await fetch(http, f"{path}{sep}token={token}x", headers)  # refused ones too
            await http.get(f"/media/nothing-here-at-all-000.mp3?token={token}")
            await http.get(f"/api/rooms/{room_id}/messages?limit=-1&token={token}")  # a 400
        sio = await connect(server)
        await call(sio, "joinRoom", {"roomId": room_id, "username": "ann", "token": token})
        await call(sio, "joinRoom", {"roomId": room_id, "username": "ann", "token": token + "!"})
        await call(sio, "joinRoom", {"roomId": room_id, "username": "a\x00", "token": token})
        await sio.disconnect()
        await asyncio.sleep(0.1)
    finally:
        logging.getLogger("uvicorn.access").removeHandler(recorder)
        logging.getLogger().removeHandler(recorder)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
    text = "\n".join(line for line in recorder.lines if not line.startswith("httpx"))
    assert "token=<redacted>" in text, "the access log did record the requests"
    assert f"/api/rooms/{room_id}/replay" in text
    assert token not in text


def test_token_comparison() -> None:
    digest = token_digest("s3cret")
    assert token_matches("s3cret", digest)
    for wrong in (None, "", "s3cre", "s3cret ", "S3CRET", "x" * 10_000):
        assert not token_matches(wrong, digest)
    assert redact("GET /api/rooms/a/messages?limit=5&token=abc-_12 HTTP/1.1") == (
        "GET /api/rooms/a/messages?limit=5&token=<redacted> HTTP/1.1"
    )
    assert redact("/media/x.mp3?TOKEN=abc") == "/media/x.mp3?TOKEN=<redacted>"


def test_token_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The digests are compared by ``hmac.compare_digest``, whose time does not depend on
    where they differ; a missing token is hashed and compared all the same."""
    import tomchat.chat.access as access

    calls: list[tuple[bytes, bytes]] = []
    real = access.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(access.hmac, "compare_digest", spy)
    digest = token_digest("right")
    assert not token_matches(None, digest) and not token_matches("wrong", digest)
    assert token_matches("right", digest)
    assert len(calls) == 3 and all(len(a) == len(b) == 64 for a, b in calls)


async def test_access_is_checked_against_the_store(server: RunningServer) -> None:
    access = RoomAccess(server.services.db)
    token = await access.create_private_room(server.services.conversation, "vault", "Vault")
    assert token is not None
    assert await access.allows("vault", token) and not await access.allows("vault", None)
    assert await access.allows("anything-public", None)
    assert await access.create_private_room(server.services.conversation, "vault", "V") is None
    # A public room cannot be turned private after the fact.
    await server.services.conversation.ensure_room("open-room")
    assert await access.create_private_room(server.services.conversation, "open-room", "x") is None
    assert await access.allows("open-room", None)

"""``GET /api/features`` and the exports of a private room, over real HTTP."""

from __future__ import annotations

import re
from dataclasses import replace

import httpx
import pytest

from tests.conftest import RunningServer, start_server
from tomchat.domain.events import MessagePosted, ReplyAudio, ReplyCompleted, ReplyStarted
from tomchat.media.files import MediaStore
from tomchat.settings import Settings

pytestmark = pytest.mark.timeout(60)


async def test_features_of_a_server_without_voice(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/api/features")
    assert response.status_code == 200
    assert response.json() == {
        "tts": False,
        "asr": False,
        "llm": "demo",
        "characters": True,
        "trustedIdentity": False,
    }


async def test_features_of_a_server_with_voice(server_settings: Settings) -> None:
    settings = replace(server_settings, tts="fish", asr="fish", fish_api_key="k")
    running, stop = await start_server(settings)
    try:
        async with httpx.AsyncClient(base_url=running.url) as http:
            body = (await http.get("/api/features")).json()
        assert (body["tts"], body["asr"]) == (True, True)
    finally:
        await stop()


async def test_a_private_rooms_markdown_export_plays_with_the_invite(
    server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        created = await http.post("/api/rooms", json={"name": "Secret", "private": True})
        assert created.status_code == 201
        room, token = created.json()["id"], created.json()["token"]
        assert server.services.media is not None
        audio = b"ID3" + bytes(range(64))
        url = MediaStore.url(await server.services.media.save(audio, "mp3"))
        await server.services.store.append(
            room,
            [
                MessagePosted(message_id="m", username="eve", content="<img src=x onerror=boom>"),
                ReplyStarted(message_id="r", character="Tom", in_reply_to=("m",)),
                ReplyAudio(message_id="r", audio_url=url, format="mp3"),
                ReplyCompleted(message_id="r", content="**bold**", status="complete"),
            ],
        )
        # Without the token the room does not exist; with it the file links its audio.
        missing = await http.get(f"/api/rooms/{room}/transcript", params={"format": "markdown"})
        assert missing.status_code == 404
        exported = await http.get(
            f"/api/rooms/{room}/transcript", params={"format": "markdown", "token": token}
        )
        assert exported.status_code == 200
        assert "> &lt;img src=x onerror=boom>" in exported.text
        [link] = re.findall(r"\[audio\]\(([^)]+)\)", exported.text)
        assert link.startswith(f"{server.url}{url}?token=")
        played = await http.get(link)
        assert (played.status_code, played.content) == (200, audio)
        assert (await http.get(f"{server.url}{url}")).status_code == 404

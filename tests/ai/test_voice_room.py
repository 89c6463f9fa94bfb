"""End to end: a real server with the real providers pointed at the fake services, and real
python-socketio clients in the room.

``TOMCHAT_LLM=openai`` streams from the fake OpenAI-compatible server, ``TOMCHAT_TTS=fish``
and ``TOMCHAT_ASR=fish`` talk to the fake Fish server through fish-audio-sdk.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio

from tests.ai.conftest import LLM_KEY
from tests.conftest import RunningServer, serve, start_server
from tests.fakes.fish import MP3_FRAME_MS, FakeFish, mp3_frame
from tests.fakes.llm import FakeLLM, Hang, Reply, openai_chunk, openai_stream, sse
from tests.support.settings import make_settings
from tomchat.domain.events import MessagePosted, ReplyAudio, ReplyCompleted
from tomchat.domain.limits import LiveLimits, Rate
from tomchat.settings import Settings

pytestmark = pytest.mark.timeout(60)

SENTENCES = [
    "Hey ann, ",
    "good to see you. ",
    "I was just ",
    "thinking about ",
    "sailing boats. ",
    "Do you ",
    "sail?",
]


@dataclass
class Listener:
    """A room member that records every live event, in arrival order, with its time."""

    url: str
    room: str
    username: str
    sio: socketio.AsyncClient = field(default_factory=socketio.AsyncClient)
    seen: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def join(self) -> dict[str, Any]:
        for name in ("message", "aiStart", "aiTextChunk", "aiAudio", "aiComplete"):
            self.sio.on(name, self._recorder(name))
        await self.sio.connect(self.url, transports=["websocket"], wait_timeout=10)
        ack = await self.call("joinRoom", {"roomId": self.room, "username": self.username})
        assert ack["ok"], ack
        return ack

    def _recorder(self, name: str) -> Callable[[dict[str, Any]], Any]:
        async def record(payload: dict[str, Any]) -> None:
            self.seen.append((name, payload, time.perf_counter()))
            self._changed.set()

        return record

    async def call(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        ack: dict[str, Any] = await self.sio.call(event, payload, timeout=15)
        return ack

    def names(self) -> list[str]:
        return [name for name, _, _ in self.seen]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [p for n, p, _ in self.seen if n == name]

    async def wait_for(self, predicate: Callable[[Listener], bool], timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

    async def completed(self, timeout: float = 20) -> dict[str, Any]:
        await self.wait_for(lambda c: bool(c.of("aiComplete")), timeout)
        return self.of("aiComplete")[-1]


@pytest.fixture
def fish() -> AsyncIterator[FakeFish]:
    with FakeFish(frames_per_char=0.2, frames_per_message=4) as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def llm() -> AsyncIterator[FakeLLM]:
    with FakeLLM(authorization=f"Bearer {LLM_KEY}") as fake:
        yield fake  # type: ignore[misc]


def voice_settings(tmp_path: Path, llm: FakeLLM, fish: FakeFish, **overrides: Any) -> Settings:
    env = {
        "TOMCHAT_LLM": "openai",
        "TOMCHAT_LLM_BASE_URL": f"{llm.url}/v1",
        "TOMCHAT_LLM_API_KEY": LLM_KEY,
        "TOMCHAT_LLM_MODEL": "tom-7b",
        "TOMCHAT_TTS": "fish",
        "TOMCHAT_ASR": "fish",
        "FISH_API_KEY": fish.api_key,
        "TOMCHAT_FISH_BASE_URL": fish.url,
        "TOMCHAT_FISH_VOICE": "tom-voice",
    }
    return make_settings(tmp_path, env=env, **overrides)


@pytest.fixture
async def server(tmp_path: Path, llm: FakeLLM, fish: FakeFish) -> AsyncIterator[RunningServer]:
    async with serve(voice_settings(tmp_path, llm, fish)) as running:
        yield running


async def listener(server: RunningServer, room: str, user: str) -> Listener:
    member = Listener(server.url, room, user)
    await member.join()
    return member


async def room_log(server: RunningServer, room: str) -> list[Any]:
    return [e.event for e in await server.services.store.read_stream(room)]


def media_files(server: RunningServer) -> list[Path]:
    return sorted(p for p in server.settings.media_dir.iterdir() if not p.name.endswith(".part"))


async def test_room_hears_tom_while_his_text_streams(
    server: RunningServer, llm: FakeLLM, fish: FakeFish
) -> None:
    llm.script(openai_stream(SENTENCES, delay=0.08))
    ann, bob = await listener(server, "deck", "ann"), await listener(server, "deck", "bob")
    sent = await ann.call("sendMessage", {"roomId": "deck", "content": "Hi Tom!"})
    assert sent["ok"]
    done = await ann.completed()
    await bob.completed()

    # The whole reply reached everyone, piece by piece and whole.
    for member in (ann, bob):
        chunks = [p["chunk"] for p in member.of("aiTextChunk")]
        assert "".join(chunks) == "".join(SENTENCES)
        assert member.of("aiComplete")[-1]["content"] == "".join(SENTENCES)
    assert done["status"] == "complete"

    # Voice began while the text was still streaming, and before the reply completed.
    names = ann.names()
    first_audio = names.index("aiAudio")
    last_chunk = len(names) - 1 - names[::-1].index("aiTextChunk")
    assert first_audio < last_chunk
    assert first_audio < names.index("aiComplete")
    audio_url = ann.of("aiAudio")[0]["audioUrl"]
    assert audio_url.startswith("/media/")
    assert done["audioUrl"] == audio_url

    # What the model was asked, and in which voice Fish spoke.
    body = llm.requests[0].json()
    assert body["model"] == "tom-7b"
    assert body["messages"][-1] == {"role": "user", "content": "ann: Hi Tom!"}
    [session] = fish.sessions
    assert session.request is not None
    assert session.request["reference_id"] == "tom-voice"
    assert "".join(session.texts) == "".join(SENTENCES)

    # The file on disk is exactly what Fish sent, and the log records its size and length.
    async def final_audio() -> ReplyAudio:
        while True:
            audio = [e for e in await room_log(server, "deck") if isinstance(e, ReplyAudio)]
            if audio and audio[-1].duration_ms is not None:
                return audio[-1]
            await asyncio.sleep(0.02)

    final = await asyncio.wait_for(final_audio(), 10)
    [path] = media_files(server)
    assert final.audio_url == audio_url == f"/media/{path.name}"
    assert path.read_bytes() == bytes(session.audio)
    assert final.bytes == len(session.audio)
    assert final.duration_ms == round(session.frames * MP3_FRAME_MS)
    assert final.format == "mp3"

    # And the room can fetch it.
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get(audio_url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.content == bytes(session.audio)
    for member in (ann, bob):
        await member.sio.disconnect()


async def test_media_is_served_while_it_grows(server: RunningServer) -> None:
    media = server.services.media
    assert media is not None
    writer = media.open_writer("mp3")
    frames = [mp3_frame(i) for i in range(30)]
    writer.write(frames[0])
    got = bytearray()
    first_arrived = asyncio.Event()

    async def fetch() -> httpx.Response:
        async with (
            httpx.AsyncClient(base_url=server.url) as http,
            http.stream("GET", writer.url) as response,
        ):
            async for data in response.aiter_bytes():
                got.extend(data)
                first_arrived.set()
            return response

    fetching = asyncio.create_task(fetch())
    await asyncio.wait_for(first_arrived.wait(), 5)
    assert bytes(got) == frames[0]  # served before the file is finished
    for frame in frames[1:]:
        writer.write(frame)
        await asyncio.sleep(0.002)
    writer.complete()
    response = await asyncio.wait_for(fetching, 5)
    assert response.headers["cache-control"] == "no-store"
    assert bytes(got) == b"".join(frames)

    async with httpx.AsyncClient(base_url=server.url) as http:
        whole = await http.get(writer.url)
        part = await http.get(writer.url, headers={"Range": "bytes=100-199"})
        tail = await http.get(writer.url, headers={"Range": "bytes=-50"})
        beyond = await http.get(writer.url, headers={"Range": "bytes=999999-"})
        missing = await http.get("/media/" + "A" * 24 + ".mp3")
        sneaky = await http.get("/media/..%2F..%2Fetc%2Fpasswd")
    everything = b"".join(frames)
    assert whole.content == everything
    assert whole.headers["content-length"] == str(len(everything))
    assert (part.status_code, part.content) == (206, everything[100:200])
    assert part.headers["content-range"] == f"bytes 100-199/{len(everything)}"
    assert (tail.status_code, tail.content) == (206, everything[-50:])
    assert beyond.status_code == 416
    assert missing.status_code == 404
    assert sneaky.status_code == 404


async def test_a_speech_failure_never_fails_the_text_and_keeps_the_audio_so_far(
    server: RunningServer, llm: FakeLLM, fish: FakeFish, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tomchat")
    fish.failure = "error"
    fish.fail_after_messages = 1
    llm.script(openai_stream(SENTENCES, delay=0.03))
    ann = await listener(server, "r-tts", "ann")
    await ann.call("sendMessage", {"roomId": "r-tts", "content": "Talk to me"})
    done = await ann.completed()
    assert done["status"] == "complete"
    assert done["content"] == "".join(SENTENCES)
    # Fish ended the session early: the audio it had sent is kept as the reply's audio.
    async with asyncio.timeout(10):
        while (
            len(audio := [e for e in await room_log(server, "r-tts") if isinstance(e, ReplyAudio)])
            < 2
        ):
            await asyncio.sleep(0.05)
    [session] = fish.sessions
    assert audio[-1].audio_url == audio[0].audio_url is not None
    assert audio[-1].bytes == len(session.audio) > 0
    [kept] = media_files(server)
    assert kept.read_bytes() == bytes(session.audio)
    row = await server.services.reader.message(done["id"])
    assert row is not None
    assert row.audio_url == audio[-1].audio_url
    # What Fish said is in the log and in the event, and reaches the room.
    said = "Fish Audio ended the live TTS session with an error: synthesis backend failed"
    assert [a.error for a in audio] == [None, said]
    assert f"speech for reply {done['id']} failed: {said}" in caplog.text
    await ann.wait_for(lambda c: len(c.of("aiAudio")) == 2, 10)
    first, last = ann.of("aiAudio")
    assert "error" not in first
    assert last["error"] == said
    assert last["audioUrl"] == audio[-1].audio_url
    await ann.sio.disconnect()


async def test_a_voice_fish_refuses_is_marked_unavailable_with_the_reason(
    server: RunningServer, llm: FakeLLM, fish: FakeFish, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tomchat")
    fish.refusal = (402, {"message": "Insufficient balance", "status": 402})
    llm.script(openai_stream(SENTENCES, delay=0.01))
    ann = await listener(server, "r-402", "ann")
    await ann.call("sendMessage", {"roomId": "r-402", "content": "Talk to me"})
    done = await ann.completed()
    assert done["status"] == "complete"
    assert done["content"] == "".join(SENTENCES)
    said = (
        "Fish Audio says the account has no credit left: top up the API balance"
        " (HTTP 402): Insufficient balance"
    )
    await ann.wait_for(lambda c: bool(c.of("aiAudio")), 10)
    [payload] = ann.of("aiAudio")
    assert payload == {
        "messageId": done["id"],
        "roomId": "r-402",
        "audioUrl": None,
        "error": said,
        "version": payload["version"],
    }
    [event] = [e for e in await room_log(server, "r-402") if isinstance(e, ReplyAudio)]
    assert (event.audio_url, event.bytes, event.error) == (None, 0, said)
    assert media_files(server) == []
    assert said in caplog.text
    assert fish.sessions == []
    await ann.sio.disconnect()


async def test_a_model_failure_mid_stream_keeps_text_and_voice_so_far(
    server: RunningServer, llm: FakeLLM, fish: FakeFish
) -> None:
    steps = openai_stream(SENTENCES[:2], delay=0.02, finish=False, usage=False, done=False).steps
    steps.append(sse({"error": {"message": f"overloaded (key {LLM_KEY})", "code": 503}}))
    llm.script(Reply(steps=steps))
    ann = await listener(server, "r-fail", "ann")
    await ann.call("sendMessage", {"roomId": "r-fail", "content": "Hello?"})
    done = await ann.completed()
    assert done["status"] == "failed"
    assert done["content"] == "".join(SENTENCES[:2])
    assert "overloaded" in done["error"]
    assert LLM_KEY not in str(ann.seen)
    # Tom still says the part he got out.
    fish.wait_for(lambda: bool(fish.sessions) and fish.sessions[0].finish_sent == "stop")
    assert "".join(fish.sessions[0].spoken) == "".join(SENTENCES[:2])
    await ann.sio.disconnect()


async def test_a_refused_key_fails_the_reply_with_a_clear_error(
    tmp_path: Path, llm: FakeLLM, fish: FakeFish, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-0123456789abcdef0123456789"
    settings = voice_settings(tmp_path, llm, fish, llm_api_key=wrong)
    running, stop = await start_server(settings)
    try:
        ann = await listener(running, "r-401", "ann")
        await ann.call("sendMessage", {"roomId": "r-401", "content": "Anyone?"})
        done = await ann.completed()
        assert done["status"] == "failed"
        assert done["content"] == ""
        assert "refused the API key (HTTP 401)" in done["error"]
        assert len(llm.requests) == 1  # not retried
        assert wrong not in str(ann.seen)
        await ann.sio.disconnect()
    finally:
        await stop()
    assert wrong not in caplog.text
    assert wrong[3:15] not in caplog.text


async def test_stop_generation_closes_the_model_and_the_voice(
    server: RunningServer, llm: FakeLLM, fish: FakeFish
) -> None:
    steps = openai_stream(SENTENCES[:2], delay=0.02, finish=False, usage=False, done=False).steps
    llm.script(Reply(steps=[*steps, Hang()]))
    ann = await listener(server, "r-stop", "ann")
    await ann.call("sendMessage", {"roomId": "r-stop", "content": "Tell me a long story"})
    await ann.wait_for(lambda c: len(c.of("aiTextChunk")) == 2)
    # Wait until Fish has spoken the first sentence, so there is audio to keep.
    await ann.wait_for(lambda c: bool(c.of("aiAudio")), 10)
    message_id = ann.of("aiStart")[0]["messageId"]
    stopped_at = time.perf_counter()
    ack = await ann.call("stopGeneration", {"roomId": "r-stop", "messageId": message_id})
    assert ack == {"ok": True}
    done = await ann.completed()
    assert done["status"] == "stopped"
    assert done["content"] == "".join(SENTENCES[:2])
    for _ in range(200):
        if llm.hangups:
            break
        await asyncio.sleep(0.01)
    [(_, hung_up_at)] = llm.hangups
    assert hung_up_at - stopped_at < 1.0
    fish.wait_for(lambda: fish.sessions[0].client_gone)
    assert not fish.sessions[0].stop_received  # cut off, not asked to finish

    # The audio so far stays playable and is recorded as final.
    async def final() -> ReplyAudio:
        while True:
            audio = [e for e in await room_log(server, "r-stop") if isinstance(e, ReplyAudio)]
            if len(audio) >= 2:
                return audio[-1]
            await asyncio.sleep(0.02)

    last = await asyncio.wait_for(final(), 10)
    [path] = media_files(server)
    assert last.audio_url == f"/media/{path.name}"
    assert last.bytes == path.stat().st_size > 0
    assert path.read_bytes() == bytes(fish.sessions[0].audio)[: last.bytes]
    await ann.sio.disconnect()


# --- voice messages ----------------------------------------------------------------------

OGG = b"OggS\x00\x02" + bytes(range(256)) * 20


async def test_voice_message_is_stored_transcribed_posted_and_answered(
    server: RunningServer, llm: FakeLLM, fish: FakeFish
) -> None:
    llm.default = openai_stream(["I hear you."])
    ann, bob = await listener(server, "r-voice", "ann"), await listener(server, "r-voice", "bob")
    # Raw bytes (a Socket.IO binary attachment), labelled as something else.
    ack = await ann.call(
        "sendVoiceMessage", {"roomId": "r-voice", "audio": OGG, "mimeType": "audio/wav"}
    )
    assert ack["ok"], ack
    assert ack["content"] == "Hello Tom, how are you?"
    assert ack["audioUrl"].endswith(".ogg")  # judged by its bytes, not its label
    [call] = fish.asr_calls
    assert call.payload["audio"] == OGG
    [path] = [p for p in media_files(server) if p.suffix == ".ogg"]
    assert path.read_bytes() == OGG
    await bob.wait_for(lambda c: bool(c.of("message")))
    [posted] = bob.of("message")
    assert (posted["content"], posted["source"], posted["audioUrl"]) == (
        "Hello Tom, how are you?",
        "voice",
        ack["audioUrl"],
    )
    assert posted["id"] == ack["messageId"]
    events = [e for e in await room_log(server, "r-voice") if isinstance(e, MessagePosted)]
    assert events[-1].source == "voice"
    # Tom answers what was said.
    done = await bob.completed()
    assert done["content"] == "I hear you."
    assert llm.requests[-1].json()["messages"][-1]["content"] == "ann: Hello Tom, how are you?"

    # Base64 works too, and a retry with the same clientId adds nothing.
    as_text = base64.b64encode(OGG).decode()
    payload = {"roomId": "r-voice", "audio": as_text, "mimeType": "audio/ogg", "clientId": "c1"}
    first = await ann.call("sendVoiceMessage", payload)
    again = await ann.call("sendVoiceMessage", payload)
    assert first["ok"]
    assert (again["messageId"], again["version"]) == (first["messageId"], first["version"])
    recordings = [p for p in media_files(server) if p.suffix == ".ogg"]
    assert len(recordings) == 2  # the retry's copy was not kept
    await ann.sio.disconnect()
    await bob.sio.disconnect()


async def test_voice_messages_that_are_refused(
    tmp_path: Path, llm: FakeLLM, fish: FakeFish
) -> None:
    # Many refusals in a row: lift the voice rate limit, which is not what is tested here.
    generous = LiveLimits(voice=Rate(burst=100, per_second=100.0))
    server, stop = await start_server(voice_settings(tmp_path, llm, fish, live_limits=generous))
    try:
        await refusals(server, fish)
    finally:
        await stop()


async def refusals(server: RunningServer, fish: FakeFish) -> None:
    ann = await listener(server, "r-bad", "ann")

    async def send(audio: Any) -> dict[str, Any]:
        return await ann.call(
            "sendVoiceMessage", {"roomId": "r-bad", "audio": audio, "mimeType": "audio/webm"}
        )

    not_audio = await send(b"<html>definitely not audio</html>")
    assert not_audio["error"]["code"] == "bad_request"
    too_big = await send(b"OggS" + bytes(5 * 1024 * 1024))
    assert too_big["error"]["code"] == "too_large"
    bad_base64 = await send("this is not base64!")
    assert bad_base64["error"]["code"] == "bad_request"
    fish.asr_status = 500
    asr_down = await send(OGG)
    assert asr_down["error"]["code"] == "unavailable"
    fish.asr_status = 200
    fish.asr_answer = {"text": "  ", "duration": 0.4, "segments": []}
    silent = await send(OGG)
    assert silent["error"]["code"] == "bad_request"
    not_member = await ann.call("sendVoiceMessage", {"roomId": "elsewhere", "audio": OGG})
    assert not_member["error"]["code"] == "forbidden"
    # Nothing was stored, and nothing was posted.
    assert media_files(server) == []
    assert not any(isinstance(e, MessagePosted) for e in await room_log(server, "r-bad"))
    await ann.sio.disconnect()


async def test_without_asr_voice_messages_are_unavailable(
    tmp_path: Path, llm: FakeLLM, fish: FakeFish
) -> None:
    running, stop = await start_server(voice_settings(tmp_path, llm, fish, asr="none"))
    try:
        ann = await listener(running, "r-noasr", "ann")
        ack = await ann.call("sendVoiceMessage", {"roomId": "r-noasr", "audio": OGG})
        assert ack["error"]["code"] == "unavailable"
        assert media_files(running) == []
        assert fish.asr_calls == []
        await ann.sio.disconnect()
    finally:
        await stop()


async def test_a_reply_with_no_text_has_no_audio(
    server: RunningServer, llm: FakeLLM, fish: FakeFish
) -> None:
    llm.script(Reply(steps=[sse(openai_chunk(finish="stop")), b"data: [DONE]\n\n"]))
    ann = await listener(server, "r-empty", "ann")
    await ann.call("sendMessage", {"roomId": "r-empty", "content": "..."})
    done = await ann.completed()
    assert done["content"] == ""
    await asyncio.sleep(0.2)
    assert ann.of("aiAudio") == []
    completed = [e for e in await room_log(server, "r-empty") if isinstance(e, ReplyCompleted)]
    # An empty reply is never an honest "complete".
    assert (completed[-1].status, completed[-1].error) == (
        "failed",
        "The model sent an empty reply",
    )
    assert completed[-1].content == ""
    assert media_files(server) == []
    await ann.sio.disconnect()

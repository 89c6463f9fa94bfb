"""A Fish Audio server: live TTS over WebSocket and ASR over HTTP, as the real service speaks them.

``GET /v1/tts/live`` upgrades to a WebSocket carrying binary msgpack frames, if the request
has the ``model`` header and a good key: otherwise it is refused with an HTTP error and a JSON
body, as the real service refuses it (401 for a bad key; ``refusal`` scripts others, such as
402 when the account has no credit). The client sends ``start`` (with ``request``), ``text``,
``flush`` and ``stop``; the server answers ``audio`` frames and then ``finish`` with reason
``stop``, and closes only after the client's ``stop``. It may also send ``log`` events
(``logs``), and fail as scripted (``failure``): ``finish`` with reason ``error`` and a
``message``, an ``error`` event, a close with a code and reason, an early ``finish`` with
reason ``stop`` (before the client's ``stop``), or silence.
``POST /v1/asr`` takes a msgpack body and answers JSON ``{text, duration, segments}``; with
``ignore_timestamps`` the segments are left out.

The audio is real MP3: silent MPEG-1 Layer III frames (128 kbit/s, 44.1 kHz, mono), each
carrying its serial number in the ancillary bytes a decoder ignores, so a test comparing the
file on disk with what was sent also catches reordered or repeated frames.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

import ormsgpack
import uvicorn

from tests.fakes.background import BackgroundLoop

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MP3_FRAME_BYTES = 417
MP3_FRAME_MS = 1152 / 44100 * 1000
_MP3_HEADER = bytes([0xFF, 0xFB, 0x90, 0xC0])  # MPEG-1 L3, 128 kbit/s, 44.1 kHz, mono, no CRC
_SIDE_INFO = bytes(17)  # all zero: no main data, the frame decodes to silence


def mp3_frame(serial: int) -> bytes:
    tag = b"FAKE" + struct.pack(">I", serial)
    body = _SIDE_INFO + tag
    return _MP3_HEADER + body + bytes(MP3_FRAME_BYTES - len(_MP3_HEADER) - len(body))


def mp3_duration_ms(frames: int) -> float:
    return frames * MP3_FRAME_MS


Failure = Literal["error", "error_event", "close", "end", "stall"]


@dataclass
class TtsSession:
    headers: dict[str, str]
    request: dict[str, Any] | None = None
    events: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    # Each piece of text the fake turned into audio, as it was cut by flushes and stop.
    spoken: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    frames: int = 0
    stop_received: bool = False
    finish_sent: str | None = None
    client_gone: bool = False
    first_text_at: float | None = None
    first_audio_at: float | None = None
    # When the text that produced the first audio reached the fake (its flush or stop).
    first_audio_trigger_at: float | None = None
    closed_at: float | None = None


@dataclass
class AsrCall:
    headers: dict[str, str]
    payload: dict[str, Any]


class FakeFish:
    """Use as ``with FakeFish() as fish:``; ``fish.url`` is the base URL for the SDK."""

    def __init__(
        self,
        *,
        api_key: str = "fish-test-key",
        first_audio_delay: float = 0.0,
        frames_per_char: float = 0.25,
        frames_per_message: int = 6,
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        # Pretend synthesis takes this long before the first audio of a session.
        self.first_audio_delay = first_audio_delay
        self.frames_per_char = frames_per_char
        self.frames_per_message = frames_per_message
        # Scripted failure after this many audio messages of a session.
        self.failure: Failure | None = None
        self.fail_after_messages = 1
        # What the failure says: the error ``finish``'s message, the ``error`` event's text
        # or the close reason.
        self.failure_message = "synthesis backend failed"
        # Sent as ``log`` events once a session has started.
        self.logs: list[str] = []
        # Refuse every live TTS upgrade with this HTTP status and JSON body.
        self.refusal: tuple[int, dict[str, Any]] | None = None
        self.sessions: list[TtsSession] = []
        self.asr_calls: list[AsrCall] = []
        self.asr_status = 200
        self.asr_answer: dict[str, Any] = {
            "text": "Hello Tom, how are you?",
            "duration": 1.83,
            "segments": [{"text": "Hello Tom, how are you?", "start": 0.0, "end": 1.83}],
        }
        self._serial = 0
        self._lock = threading.Lock()
        self._bg: BackgroundLoop | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Future[None] | None = None
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeFish:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self, log_level="warning", lifespan="off", ws="websockets-sansio", http="h11"
        )
        self._server = uvicorn.Server(config)
        self._bg = BackgroundLoop("fake-fish")
        server = self._server

        async def start() -> asyncio.Future[None]:
            task = asyncio.ensure_future(server.serve(sockets=[sock]))
            while not server.started:
                await asyncio.sleep(0.005)
            return task

        self._task = self._bg.run(start())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._bg and self._server and self._task
        server, task = self._server, self._task

        async def stop() -> None:
            server.should_exit = True
            server.force_exit = True
            await asyncio.wait({task}, timeout=5)

        self._bg.run(stop())
        self._bg.close()

    def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the fake Fish server never got there")
            time.sleep(0.005)

    # --- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        if scope["type"] == "websocket" and scope["path"] == "/v1/tts/live":
            await self._tts(headers, receive, send)
        elif scope["type"] == "http" and scope["path"] == "/v1/asr":
            await self._asr(scope, headers, receive, send)
        elif scope["type"] == "http":
            await _json(send, 404, {"message": "Not Found"})

    def _authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization") == f"Bearer {self.api_key}"

    async def _asr(
        self, scope: Scope, headers: dict[str, str], receive: Receive, send: Send
    ) -> None:
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] != "POST":
            await _json(send, 405, {"message": "Method Not Allowed"})
            return
        if not self._authorized(headers):
            await _json(send, 401, {"message": "Invalid api key", "status": 401})
            return
        payload = ormsgpack.unpackb(bytes(body))
        self.asr_calls.append(AsrCall(headers, payload))
        if self.asr_status != 200:
            message = "Insufficient balance" if self.asr_status == 402 else "ASR failed"
            await _json(send, self.asr_status, {"message": message, "status": self.asr_status})
            return
        answer = dict(self.asr_answer)
        if payload.get("ignore_timestamps"):
            answer["segments"] = []
        await _json(send, 200, answer)

    async def _tts(self, headers: dict[str, str], receive: Receive, send: Send) -> None:
        first = await receive()
        assert first["type"] == "websocket.connect"
        if not self._authorized(headers):
            await _refuse(send, 401, {"message": "Invalid api key", "status": 401})
            return
        if not headers.get("model"):
            await _refuse(send, 400, {"message": "model header is required", "status": 400})
            return
        if self.refusal is not None:
            await _refuse(send, *self.refusal)
            return
        await send({"type": "websocket.accept"})
        session = TtsSession(headers=headers)
        with self._lock:
            self.sessions.append(session)
        jobs: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()
        worker = asyncio.ensure_future(self._synthesise(session, jobs, send))
        buffer = ""
        chunk_length = 200
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    session.client_gone = True
                    return
                raw = message.get("bytes")
                if raw is None:
                    continue
                data = ormsgpack.unpackb(raw)
                event = data.get("event")
                session.events.append(str(event))
                now = time.perf_counter()
                if event == "start":
                    session.request = data["request"]
                    chunk_length = int(data["request"].get("chunk_length") or 200)
                    for line in self.logs:
                        await _ws_send(send, {"event": "log", "message": line})
                elif event == "text":
                    if session.first_text_at is None:
                        session.first_text_at = now
                    session.texts.append(data["text"])
                    buffer += data["text"]
                    # Like the real service, a long enough buffer is spoken without a flush.
                    if len(buffer) >= chunk_length:
                        jobs.put_nowait((buffer, now))
                        buffer = ""
                elif event == "flush":
                    if buffer:
                        jobs.put_nowait((buffer, now))
                    buffer = ""
                elif event == "stop":
                    session.stop_received = True
                    if buffer:
                        jobs.put_nowait((buffer, now))
                    buffer = ""
                    jobs.put_nowait(None)
        finally:
            if not worker.done():
                worker.cancel()
            session.closed_at = time.perf_counter()

    async def _synthesise(
        self, session: TtsSession, jobs: asyncio.Queue[tuple[str, float] | None], send: Send
    ) -> None:
        messages = 0
        while True:
            job = await jobs.get()
            if job is None:
                session.finish_sent = "stop"
                await _ws_send(send, {"event": "finish", "reason": "stop"})
                await send({"type": "websocket.close", "code": 1000})
                return
            text, trigger_at = job
            session.spoken.append(text)
            if session.first_audio_at is None and self.first_audio_delay:
                await asyncio.sleep(self.first_audio_delay)
            frames = max(1, math.ceil(len(text) * self.frames_per_char))
            while frames > 0:
                if self.failure and messages >= self.fail_after_messages:
                    await self._fail(session, send)
                    return
                count = min(frames, self.frames_per_message)
                frames -= count
                with self._lock:
                    serials = range(self._serial, self._serial + count)
                    self._serial += count
                audio = b"".join(mp3_frame(s) for s in serials)
                await _ws_send(send, {"event": "audio", "audio": audio, "time": 0.0})
                if session.first_audio_at is None:
                    session.first_audio_at = time.perf_counter()
                    session.first_audio_trigger_at = trigger_at
                session.audio += audio
                session.frames += count
                messages += 1

    async def _fail(self, session: TtsSession, send: Send) -> None:
        if self.failure == "error":
            session.finish_sent = "error"
            await _ws_send(
                send, {"event": "finish", "reason": "error", "message": self.failure_message}
            )
            await send({"type": "websocket.close", "code": 1011})
        elif self.failure == "error_event":
            await _ws_send(
                send, {"event": "error", "error": self.failure_message, "max_concurrency": 5}
            )
            await send({"type": "websocket.close", "code": 1008})
        elif self.failure == "close":
            await send({"type": "websocket.close", "code": 1011, "reason": self.failure_message})
        elif self.failure == "end":
            session.finish_sent = "stop"
            await _ws_send(send, {"event": "finish", "reason": "stop"})
            await send({"type": "websocket.close", "code": 1000})
        else:  # stall: keep the socket open and never speak again
            await asyncio.Event().wait()


async def _ws_send(send: Send, payload: dict[str, Any]) -> None:
    await send({"type": "websocket.send", "bytes": ormsgpack.packb(payload)})


async def _refuse(send: Send, status: int, payload: Any) -> None:
    """Answer a WebSocket upgrade with an HTTP error (ASGI's WebSocket Denial Response)."""
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})


async def _json(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

"""A scripted chat-completions server: OpenAI-compatible SSE and JanitorAI-style answers.

Written on bare asyncio streams rather than a framework so a script controls the wire
exactly: where a chunk is cut, pauses, a connection dropped mid-body or before the headers,
and whether the client hung up.

Each request takes the next scripted :class:`Reply` (or :attr:`FakeLLM.default`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from tests.fakes.background import BackgroundLoop


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Drop:
    """Cut the TCP connection at once, mid-answer (or before the headers if it comes first)."""


@dataclass(frozen=True)
class Hang:
    """Send nothing more and keep the connection open until the client leaves."""


Step = bytes | Pause | Drop | Hang


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "text/event-stream"})
    steps: list[Step] = field(default_factory=list)
    # Drop before anything is written: the client sees the connection die with no answer.
    drop_before_headers: bool = False


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float

    def json(self) -> Any:
        return json.loads(self.body)


# --- what the real services send -------------------------------------------------------


def sse(payload: Any, *, event: str | None = None) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return (head + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n").encode()


def openai_chunk(
    content: str | list[dict[str, Any]] | None = None,
    *,
    role: str | None = None,
    finish: str | None = None,
    refusal: str | None = None,
    reasoning_content: str | None = None,
    reasoning: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``. ``content`` may be a list of parts (``{"type": "text",
    "text": …}``, ``{"type": "refusal", "refusal": …}``) as some gateways send it;
    ``reasoning_content`` is DeepSeek's and vLLM's reasoning field, ``reasoning``
    OpenRouter's and Ollama's; ``refusal`` is OpenAI's."""
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    if refusal is not None:
        delta["refusal"] = refusal
    if reasoning_content is not None:
        delta["reasoning_content"] = reasoning_content
    if reasoning is not None:
        delta["reasoning"] = reasoning
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "fake-model",
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


USAGE_CHUNK = {
    "id": "chatcmpl-fake",
    "object": "chat.completion.chunk",
    "created": 1_700_000_000,
    "model": "fake-model",
    "choices": [],
    "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
}


def openai_stream(
    pieces: Sequence[str | dict[str, Any]],
    *,
    delay: float = 0.0,
    usage: bool = True,
    done: bool = True,
    keepalive: bool = False,
    finish: bool = True,
    finish_reason: str = "stop",
) -> Reply:
    """What OpenAI sends: a role chunk, content chunks, a finish chunk, usage, ``[DONE]``.

    A piece that is a dict is a whole chunk of its own (see :func:`openai_chunk`)."""
    steps: list[Step] = [b": OPENROUTER PROCESSING\n\n"] if keepalive else []
    steps.append(sse(openai_chunk("", role="assistant")))
    for piece in pieces:
        if delay:
            steps.append(Pause(delay))
        if keepalive:
            steps.append(b": keep-alive\n\n")
        steps.append(sse(piece if isinstance(piece, dict) else openai_chunk(piece)))
    if finish:
        steps.append(sse(openai_chunk(finish=finish_reason)))
    if usage:
        steps.append(sse(USAGE_CHUNK))
    if done:
        steps.append(b"data: [DONE]\n\n")
    return Reply(steps=steps)


def runaway_stream(piece: str, times: int) -> Reply:
    """A small model stuck in a loop: the same piece over and over, and no end in sight."""
    steps: list[Step] = [sse(openai_chunk("", role="assistant"))]
    steps += [sse(openai_chunk(piece))] * times
    steps.append(Hang())
    return Reply(steps=steps)


def janitor_stream(pieces: Sequence[str], *, delay: float = 0.0, done: bool = False) -> Reply:
    """JanitorAI-style: ``data: {"content": "..."}`` per piece; no finish marker needed."""
    steps: list[Step] = []
    for piece in pieces:
        if delay:
            steps.append(Pause(delay))
        steps.append(sse({"content": piece}))
    if done:
        steps.append(b"data: [DONE]\n\n")
    return Reply(steps=steps)


def json_reply(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    body = json.dumps(payload).encode()
    return Reply(
        status=status,
        headers={"content-type": "application/json", **(headers or {})},
        steps=[body],
    )


def completion_json(content: str) -> dict[str, Any]:
    """A non-streamed chat completion, as a server that ignores ``stream: true`` answers."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "fake-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
    }


def error_reply(status: int, message: str, *, retry_after: str | None = None) -> Reply:
    kind = {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return json_reply(
        {"error": {"message": message, "type": kind, "param": None, "code": kind}},
        status,
        headers,
    )


def split_every(data: bytes, size: int) -> list[Step]:
    """Cut the wire bytes into ``size``-byte pieces, wherever that falls."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def joined(steps: Iterable[Step]) -> bytes:
    return b"".join(s for s in steps if isinstance(s, bytes))


# --- the server --------------------------------------------------------------------------


class FakeLLM:
    """Use as ``with FakeLLM() as fake:``; ``fake.url`` is its base URL."""

    def __init__(self, *, authorization: str | None = None, port: int = 0) -> None:
        # When set, any other Authorization header gets the provider's 401 answer.
        self.authorization = authorization
        self.default: Reply | None = None
        self.requests: list[RecordedRequest] = []
        # (request index, time) for each answer the client abandoned before it ended.
        self.hangups: list[tuple[int, float]] = []
        self.completed: list[int] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._bg: BackgroundLoop | None = None
        self._server: asyncio.Server | None = None
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def __enter__(self) -> FakeLLM:
        self._bg = BackgroundLoop("fake-llm")
        self._server = self._bg.run(asyncio.start_server(self._connection, "127.0.0.1", self.port))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._bg and self._server
        server = self._server

        async def shutdown() -> None:
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        self._bg.run(shutdown())
        self._bg.close()

    def _next_reply(self) -> Reply:
        with self._lock:
            if self._script:
                return self._script.popleft()
        if self.default is not None:
            return self.default
        return error_reply(500, "the fake has no scripted reply left")

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                with self._lock:
                    index = len(self.requests)
                    self.requests.append(request)
                reply = self._next_reply()
                if self.authorization is not None and (
                    request.headers.get("authorization") != self.authorization
                ):
                    reply = error_reply(401, "Incorrect API key provided: sk-fake-****wxyz")
                if not await self._answer(index, reply, reader, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.transport.abort()

    async def _answer(
        self,
        index: int,
        reply: Reply,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Write one answer; False when the connection is finished."""
        if reply.drop_before_headers:
            return False
        # A client says nothing while it waits for an answer, so any read completing now
        # means it hung up.
        hangup = asyncio.ensure_future(reader.read(1))
        try:
            chunked = any(not isinstance(s, bytes) for s in reply.steps) or (
                reply.headers.get("content-type", "").startswith("text/event-stream")
            )
            head = [f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}"]
            head += [f"{k}: {v}" for k, v in reply.headers.items()]
            if chunked:
                head.append("transfer-encoding: chunked")
            else:
                head.append(f"content-length: {len(joined(reply.steps))}")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
            await writer.drain()
            for step in reply.steps:
                if hangup.done():
                    self.hangups.append((index, time.perf_counter()))
                    return False
                if isinstance(step, Pause):
                    await asyncio.wait({hangup}, timeout=step.seconds)
                elif isinstance(step, Hang):
                    await hangup
                elif isinstance(step, Drop):
                    return False
                elif chunked:
                    writer.write(f"{len(step):x}\r\n".encode() + step + b"\r\n")
                    await writer.drain()
                else:
                    writer.write(step)
                    await writer.drain()
            if hangup.done():
                self.hangups.append((index, time.perf_counter()))
                return False
            if chunked:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
            self.completed.append(index)
            return True
        except ConnectionError:
            self.hangups.append((index, time.perf_counter()))
            return False
        finally:
            if not hangup.done():
                hangup.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await hangup


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    received_at = time.perf_counter()
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return RecordedRequest(method, path, headers, body, received_at)

"""Streaming chat over HTTP: OpenAI-compatible servers and JanitorAI.

Both speak "POST a list of messages, get Server-Sent Events back"; they differ in the URL,
the ``Authorization`` header, the body and in how strictly a stream must end. One engine
(:class:`HttpChatModel`) does the streaming, retries and error mapping; the two providers
only say what differs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from tomchat.ai.protocols import ChatModelError, ChatTurn, ReplyEnd, ReplyPiece
from tomchat.ai.redaction import redact
from tomchat.ai.replies import ThinkFilter
from tomchat.ai.sse import ServerSentEvent, SSEParser
from tomchat.domain.errors import TomchatError
from tomchat.domain.events import TokenUsage

log = logging.getLogger("tomchat.ai.llm")

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
OPENAI_DEFAULT_MODEL = "gpt-4o-mini"
JANITOR_DEFAULT_URL = "https://janitorai.com/hackathon/completions"

# A 4xx says the request itself is bad (sending it again cannot help) except these three.
_RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529})
_MAX_ERROR_BODY = 64 * 1024
_MAX_JSON_BODY = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a request that failed before its first byte is repeated.

    ``deadline`` bounds all attempts together (from the first request to giving up): a
    proxy in front (LiteLLM, OpenRouter) retries on its own, and our attempts multiplied by
    its own kept a room waiting for a failure far too long.
    """

    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    deadline: float = 10.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(retry_after, 0.0)  # the server said when: honoured, not shortened
        backoff = self.base_delay * (2 ** (attempt - 1))
        # Full jitter: rooms that failed together should not retry together.
        return min(self.max_delay, random.uniform(backoff / 2, backoff))


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    # Longest silence allowed while waiting for headers or between two chunks. SSE keep-alive
    # comments count as traffic, so a slow model that sends them is not cut off.
    read: float = 60.0
    write: float = 10.0

    def httpx(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect, read=self.read, write=self.write, pool=self.connect
        )


class _BeforeFirstByte(TomchatError):
    """A failure that left the upstream answer unread; safe to try again if ``retryable``."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(slots=True)
class _StreamState:
    finished: bool = False
    finish_reason: str | None = None
    usage: TokenUsage | None = None
    refused: bool = False
    told_tool_calls: bool = False
    think: ThinkFilter = field(default_factory=ThinkFilter)

    def end(self) -> ReplyEnd:
        return ReplyEnd(self.finish_reason, self.usage, self.refused)


class HttpChatModel:
    """The shared engine. Subclasses provide the URL, headers and body."""

    provider = "model"
    # A stream that stops without ``[DONE]`` or a ``finish_reason`` was cut short, unless the
    # provider is known to end streams silently.
    require_end_marker = True
    # Whether the request asks for a usage chunk after the finish chunk (then worth waiting for).
    asks_usage = False

    def __init__(
        self,
        *,
        url: str,
        api_key: str | None,
        model: str | None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.url = url
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.retry = retry or RetryPolicy()
        self.timeouts = timeouts or Timeouts()
        self._api_key = api_key
        self._client = httpx.AsyncClient(
            timeout=self.timeouts.httpx(),
            headers={"User-Agent": "tomchat"},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, model={self.model!r})"

    def _authorization(self) -> str | None:
        raise NotImplementedError

    def _body(self, turns: Sequence[ChatTurn]) -> dict[str, Any]:
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream, application/json"}
        authorization = self._authorization()
        if authorization:
            headers["Authorization"] = authorization
        return headers

    def _safe(self, text: str) -> str:
        return redact(text, [self._api_key])

    async def aclose(self) -> None:
        await self._client.aclose()

    async def stream_reply(self, turns: Sequence[ChatTurn]) -> AsyncIterator[ReplyPiece]:
        body = msgspec.json.encode(self._body(turns))
        attempt = 0
        started = time.monotonic()
        while True:
            attempt += 1
            try:
                # aclosing: when our reader stops, the request must close now, not at GC.
                async with aclosing(self._attempt(body)) as pieces:
                    async for piece in pieces:
                        yield piece
                return
            except _BeforeFirstByte as error:
                pause = self.retry.delay(attempt, error.retry_after)
                left = self.retry.deadline - (time.monotonic() - started)
                if not error.retryable or attempt >= self.retry.attempts or pause >= left:
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    log.warning("%s request failed%s: %s", self.provider, tries, error)
                    raise ChatModelError(f"{error}{tries}") from None
                log.info(
                    "%s request failed (%s); retry %d/%d in %.2fs",
                    self.provider,
                    error,
                    attempt,
                    self.retry.attempts - 1,
                    pause,
                )
                await asyncio.sleep(pause)

    async def _attempt(self, body: bytes) -> AsyncGenerator[ReplyPiece, None]:
        headers = self._headers()
        headers["Content-Type"] = "application/json"
        got_body = False
        try:
            async with self._client.stream(
                "POST", self.url, content=body, headers=headers
            ) as response:
                if response.status_code >= 400:
                    raise await self._status_error(response)
                if 300 <= response.status_code < 400:
                    raise _BeforeFirstByte(
                        f"The {self.provider} service answered with a redirect "
                        f"(HTTP {response.status_code}); check the URL setting",
                        retryable=False,
                    )
                chunks = response.aiter_raw()
                try:
                    first = await anext(chunks)
                except StopAsyncIteration:
                    first = b""
                got_body = True
                kind = _body_kind(response.headers.get("content-type", ""), first)
                source = self._from_json if kind == "json" else self._from_sse
                async with aclosing(source(first, chunks)) as pieces:
                    async for piece in pieces:
                        yield piece
        except httpx.TimeoutException as error:
            if not got_body:
                raise _BeforeFirstByte(
                    f"The {self.provider} service did not answer in time ({_kind(error)})",
                    retryable=True,
                ) from None
            raise ChatModelError(
                f"The {self.provider} service sent nothing for {self.timeouts.read:g}s"
            ) from None
        except httpx.HTTPError as error:
            if not got_body:
                raise _BeforeFirstByte(
                    f"Could not reach the {self.provider} service ({_kind(error)})",
                    retryable=True,
                ) from None
            raise ChatModelError(
                f"The connection to the {self.provider} service broke ({_kind(error)})"
            ) from None

    async def _status_error(self, response: httpx.Response) -> _BeforeFirstByte:
        detail = ""
        try:
            raw = b""
            async for chunk in response.aiter_raw():
                raw += chunk
                if len(raw) > _MAX_ERROR_BODY:
                    break
            detail = _error_detail(raw)
        except httpx.HTTPError:
            pass
        status = response.status_code
        if status in (401, 403):
            message = f"The {self.provider} service refused the API key (HTTP {status})"
        elif status == 429:
            message = f"The {self.provider} service is rate limiting (HTTP 429)"
        elif status == 404:
            message = f"The {self.provider} service has no such endpoint or model (HTTP 404)"
        elif status >= 500:
            message = f"The {self.provider} service failed (HTTP {status})"
        else:
            message = f"The {self.provider} service rejected the request (HTTP {status})"
        if detail:
            message = f"{message}: {self._safe(detail)}"
        return _BeforeFirstByte(
            message,
            retryable=status in _RETRYABLE_STATUS,
            retry_after=_retry_after(response.headers.get("retry-after")),
        )

    async def _from_json(
        self, first: bytes, rest: AsyncIterator[bytes]
    ) -> AsyncGenerator[ReplyPiece, None]:
        raw = bytearray(first)
        async for chunk in rest:
            raw += chunk
            if len(raw) > _MAX_JSON_BODY:
                raise ChatModelError(f"The {self.provider} service's answer is too large")
        try:
            payload = msgspec.json.decode(bytes(raw))
        except msgspec.DecodeError:
            raise ChatModelError(f"The {self.provider} service sent malformed JSON") from None
        state = _StreamState()
        text = self._text_of(payload, state) + state.think.close()
        if text:
            yield text
        yield state.end()

    async def _from_sse(
        self, first: bytes, rest: AsyncIterator[bytes]
    ) -> AsyncGenerator[ReplyPiece, None]:
        parser = SSEParser()
        state = _StreamState()
        for event in parser.feed(first):
            for piece in self._event_text(event, state):
                yield piece
            if state.finished:
                break
        if not state.finished:
            async for chunk in rest:
                for event in parser.feed(chunk):
                    for piece in self._event_text(event, state):
                        yield piece
                    if state.finished:
                        break
                if state.finished:
                    break
        if not state.finished:
            for event in parser.close():
                for piece in self._event_text(event, state):
                    yield piece
                if state.finished:
                    break
        ended = state.finished or state.finish_reason is not None
        if self.require_end_marker and not ended:
            raise ChatModelError(f"The {self.provider} service's stream ended before it finished")
        if tail := state.think.close():
            yield tail
        yield state.end()

    def _event_text(self, event: ServerSentEvent, state: _StreamState) -> list[str]:
        data = event.data.strip()
        if data == "[DONE]":
            state.finished = True
            return []
        if not data:
            return []
        try:
            payload = msgspec.json.decode(data)
        except msgspec.DecodeError:
            if event.event == "error":
                raise ChatModelError(
                    f"The {self.provider} service stopped with an error: {self._safe(data)}"
                ) from None
            raise ChatModelError(f"The {self.provider} service sent a malformed chunk") from None
        if event.event == "error" and not (isinstance(payload, dict) and "error" in payload):
            payload = {"error": payload}
        text = self._text_of(payload, state)
        return [text] if text else []

    def _text_of(self, payload: Any, state: _StreamState) -> str:
        """The visible text in one chunk (or whole answer), in any of the shapes providers
        use; how the reply ends and its usage go into ``state``."""
        if not isinstance(payload, dict):
            raise ChatModelError(f"The {self.provider} service sent an unexpected chunk")
        error = payload.get("error")
        if error:
            raise ChatModelError(
                f"The {self.provider} service stopped with an error: "
                f"{self._safe(_describe_error(error))}"
            )
        if (usage := _usage(payload.get("usage"))) is not None:
            state.usage = usage
        choices = payload.get("choices")
        if isinstance(choices, list):
            text = ""
            if choices and isinstance(choice := choices[0], dict):
                reason = choice.get("finish_reason")
                if reason == "error":
                    raise ChatModelError(f"The {self.provider} service stopped with an error")
                if isinstance(reason, str) and reason:
                    state.finish_reason = reason
                holder = choice.get("delta")
                if not isinstance(holder, dict):
                    holder = choice.get("message")
                if isinstance(holder, dict):
                    text = self._holder_text(holder, state)
                elif isinstance(choice.get("text"), str):
                    text = state.think.feed(choice["text"])
            # Done once the end is known and no usage chunk is still to come.
            if state.finish_reason is not None and (state.usage or not self.asks_usage):
                state.finished = True
            return text
        content = payload.get("content")
        if isinstance(content, str | list):
            return self._holder_text(payload, state)
        message = payload.get("message")
        if isinstance(message, dict):
            return self._holder_text(message, state)
        return ""

    def _holder_text(self, holder: dict[str, Any], state: _StreamState) -> str:
        """The text of a ``delta`` or ``message``: content (a string or a list of parts), or
        a refusal. Reasoning fields are never text; tool calls are not used by tomchat."""
        if (holder.get("tool_calls") or holder.get("function_call")) and not state.told_tool_calls:
            state.told_tool_calls = True
            log.info("%s model sent a tool call; tomchat ignores it", self.provider)
        text = ""
        content = holder.get("content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            parts: list[str] = []
            for part in content:
                if isinstance(part, str):
                    parts.append(part)
                elif isinstance(part, dict):
                    kind = part.get("type")
                    if kind in (None, "text", "output_text") and isinstance(part.get("text"), str):
                        parts.append(part["text"])
                    elif kind == "refusal" and isinstance(part.get("refusal"), str):
                        state.refused = True
                        parts.append(part["refusal"])
            text = "".join(parts)
        visible = state.think.feed(text) if text else ""
        refusal = holder.get("refusal")
        if isinstance(refusal, str) and refusal:
            state.refused = True
            visible += refusal
        return visible


class OpenAIChatModel(HttpChatModel):
    """OpenAI's Chat Completions wire format: OpenAI, OpenRouter, vLLM, llama.cpp, Ollama /v1."""

    provider = "OpenAI-compatible"
    asks_usage = True

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        model: str | None,
        **options: Any,
    ) -> None:
        base = (base_url or OPENAI_DEFAULT_BASE_URL).rstrip("/")
        # People often paste the full endpoint; accept it rather than post to .../completions twice.
        url = base if base.endswith("/chat/completions") else f"{base}/chat/completions"
        super().__init__(url=url, api_key=api_key, model=model or OPENAI_DEFAULT_MODEL, **options)

    def _authorization(self) -> str | None:
        return f"Bearer {self._api_key}" if self._api_key else None

    def _body(self, turns: Sequence[ChatTurn]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": t.role, "content": t.content} for t in turns],
            "stream": True,
        }
        # Token counts come in a last chunk only when asked for.
        body["stream_options"] = {"include_usage": True}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body[self._max_tokens_field()] = self.max_tokens
        return body

    def _max_tokens_field(self) -> str:
        # OpenAI itself deprecated max_tokens (its reasoning models refuse it); the servers
        # that copy its API (vLLM, llama.cpp, Ollama, LiteLLM) all read max_tokens.
        host = (urlsplit(self.url).hostname or "").lower()
        return "max_completion_tokens" if host == "api.openai.com" else "max_tokens"


class JanitorChatModel(HttpChatModel):
    """JanitorAI's completions endpoint: OpenAI-shaped body, the key sent as it is given."""

    provider = "JanitorAI"
    require_end_marker = False

    def __init__(
        self,
        *,
        url: str | None,
        api_key: str | None,
        model: str | None = None,
        temperature: float | None = 0.8,
        max_tokens: int | None = 400,
        **options: Any,
    ) -> None:
        super().__init__(
            url=url or JANITOR_DEFAULT_URL,
            api_key=api_key,
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            **options,
        )

    def _authorization(self) -> str | None:
        return self._api_key or None

    def _body(self, turns: Sequence[ChatTurn]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messages": [{"role": t.role, "content": t.content} for t in turns],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stream": True,
        }
        if self.model:
            body["model"] = self.model
        return {k: v for k, v in body.items() if v is not None}


def _body_kind(content_type: str, first: bytes) -> str:
    content_type = content_type.lower()
    if "event-stream" in content_type:
        return "sse"
    if "json" in content_type:
        return "json"
    # Some servers label a stream text/plain; decide from the first bytes.
    head = first.lstrip(b"\xef\xbb\xbf \t\r\n")
    return "json" if head[:1] in (b"{", b"[") else "sse"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _error_detail(raw: bytes) -> str:
    try:
        payload = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return raw.decode("utf-8", "replace").strip()
    if isinstance(payload, dict):
        error = payload.get("error", payload.get("detail", payload.get("message", payload)))
        return _describe_error(error)
    return str(payload)


def _describe_error(error: Any) -> str:
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail") or error.get("error")
        code = error.get("code") or error.get("type")
        if message and code:
            return f"{message} ({code})"
        if message:
            return str(message)
        return msgspec.json.encode(error).decode()
    return str(error)


def _usage(raw: Any) -> TokenUsage | None:
    if not isinstance(raw, dict):
        return None

    def count(*names: str) -> int | None:
        for name in names:
            value = raw.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
        return None

    prompt = count("prompt_tokens", "input_tokens")
    completion = count("completion_tokens", "output_tokens")
    if prompt is None and completion is None:
        return None
    return TokenUsage(prompt_tokens=prompt, completion_tokens=completion)


def _kind(error: BaseException) -> str:
    return type(error).__name__

"""Fish Audio: live text-to-speech over its WebSocket, and speech recognition.

Both go through the official ``fishaudio`` client (``fish-audio-sdk``), so what runs against
the real service is exactly what the tests run against the fake one. For the live session we
use the client's lower-level parts (its authenticated HTTP client, the ``httpx_ws`` connection
it opens, its event types) and read the server's events ourselves: the client's own reader
drops what Fish says when it fails (the ``finish`` message, ``error`` and ``log`` events), and
an operator needs exactly that.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from typing import Any

import httpx
import ormsgpack
from fishaudio import AsyncFishAudio, WebSocketOptions
from fishaudio.core import AsyncClientWrapper
from fishaudio.exceptions import (
    APIError,
    AuthenticationError,
    FishAudioError,
    RateLimitError,
)
from fishaudio.exceptions import (
    PermissionError as FishPermissionError,
)
from fishaudio.types import CloseEvent, FlushEvent, StartEvent, TextEvent, TTSRequest
from httpx_ws import aconnect_ws

from tomchat.ai.protocols import SpeechError, TranscriberError, Transcription
from tomchat.ai.redaction import redact
from tomchat.ai.sentences import SentenceChunker

log = logging.getLogger("tomchat.ai.fish")


class _TextFeed:
    """The reply's text as Fish's client wants it: each whole sentence (or clause of a long
    one) as one text event, then a flush, so Fish never speaks half a sentence.

    The client reads this from a task of its own and never cancels that task when the audio
    side stops early, so the feed remembers it for :meth:`abandon`. A failing source ends the
    text rather than the speech: the audio for what was said so far is still wanted.
    """

    def __init__(self, source: AsyncIterable[str], on_end: Callable[[], None]) -> None:
        self._source = source
        self._on_end = on_end
        self._reader: asyncio.Task[Any] | None = None

    async def events(self) -> AsyncGenerator[TextEvent | FlushEvent, None]:
        self._reader = asyncio.current_task()
        sentences = SentenceChunker()
        try:
            async for piece in self._source:
                for sentence in sentences.feed(piece):
                    yield TextEvent(text=sentence)
                    yield FlushEvent()
        except Exception as error:
            log.warning("text for speech ended early: %s", type(error).__name__)
        finally:
            self._on_end()
        for sentence in sentences.close():
            if sentence.strip():
                yield TextEvent(text=sentence)
                yield FlushEvent()

    def abandon(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()


class FishSpeech:
    """``Speech`` through Fish Audio's live TTS (``/v1/tts/live``), MP3 out."""

    format = "mp3"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        voice: str | None,
        model: str,
        latency: str = "balanced",
        idle_timeout: float = 30.0,
        timeout: float = 30.0,
    ) -> None:
        self.voice = voice
        self.model = model
        self.latency = latency
        # Once the text has ended, the longest wait for Fish's next frame before giving up.
        self.idle_timeout = idle_timeout
        self._api_key = api_key
        http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout),
            event_hooks={"response": [_keep_refusal_body]},
        )
        self._http = AsyncClientWrapper(api_key=api_key, base_url=base_url, httpx_client=http)
        self._ws_options = WebSocketOptions(max_message_size_bytes=4 * 1024 * 1024)

    def __repr__(self) -> str:
        return f"FishSpeech(voice={self.voice!r}, model={self.model!r})"

    async def aclose(self) -> None:
        await self._http.close()

    async def speak(
        self, text: AsyncIterable[str], voice: str | None = None
    ) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        waiting = False  # True only while we wait on Fish, never while our reader works
        text_ended = False
        deadline = asyncio.timeout(None)

        def arm() -> None:
            deadline.reschedule(loop.time() + self.idle_timeout)

        def on_text_end() -> None:
            nonlocal text_ended
            text_ended = True
            if waiting:
                arm()

        feed = _TextFeed(text, on_text_end)
        stream = self._live(feed.events(), voice or self.voice)
        try:
            async with deadline:
                while True:
                    # While text still streams, silence from Fish is normal; after, it is not.
                    waiting = True
                    if text_ended:
                        arm()
                    try:
                        chunk = await anext(stream)
                    except StopAsyncIteration:
                        break
                    except Exception as error:
                        raise SpeechError(self._describe(error)) from None
                    finally:
                        waiting = False
                        if not deadline.expired():
                            deadline.reschedule(None)
                    if chunk:
                        yield chunk
        except TimeoutError:
            if not deadline.expired():
                raise
            raise SpeechError(
                f"Fish Audio sent no audio for {self.idle_timeout:g}s after the text ended"
            ) from None
        finally:
            feed.abandon()
            await _close_quietly(stream)

    async def _live(
        self, events: AsyncIterator[TextEvent | FlushEvent], voice: str | None
    ) -> AsyncGenerator[bytes, None]:
        """One live session, as the client's ``stream_websocket`` runs it (the same headers,
        connection and events), but every server event read: ``audio`` yielded, ``log``
        logged, ``error`` and an error ``finish`` raised with what Fish said."""
        request = TTSRequest(text="", reference_id=voice, format=self.format, latency=self.latency)
        async with aconnect_ws(
            "/v1/tts/live",
            client=self._http.client,
            headers=self._http.get_headers({"model": self.model}),
            **self._ws_options.to_httpx_ws_kwargs(),
        ) as ws:
            stopping = False

            async def send() -> None:
                nonlocal stopping
                await ws.send_bytes(ormsgpack.packb(StartEvent(request=request).model_dump()))
                async for event in events:
                    await ws.send_bytes(ormsgpack.packb(event.model_dump()))
                stopping = True
                await ws.send_bytes(ormsgpack.packb(CloseEvent().model_dump()))

            sender = asyncio.create_task(send(), name="fish-tts-text")
            try:
                while True:
                    data = ormsgpack.unpackb(await ws.receive_bytes())
                    kind = data.get("event") if isinstance(data, dict) else None
                    if kind == "audio":
                        audio = data.get("audio")
                        if isinstance(audio, bytes) and audio:
                            yield audio
                    elif kind == "finish":
                        if data.get("reason") != "error":
                            if stopping:
                                return
                            # Fish ended the session before the text did: what it said is
                            # kept (the caller has it), the rest of the reply goes unsaid.
                            raise SpeechError(
                                "Fish Audio ended the live TTS session before the reply's text did"
                            )
                        raise SpeechError(
                            "Fish Audio ended the live TTS session with an error"
                            + _detail(_text(data.get("message")))
                        )
                    elif kind == "error":
                        raise SpeechError(f"Fish Audio live TTS error{_detail(_event_text(data))}")
                    elif kind == "log":
                        log.info("Fish Audio says: %s", _text(data.get("message"))[:300])
            finally:
                # Fish has ended (or we stopped listening): nothing more goes to it.
                sender.cancel()
                await asyncio.wait([sender])
                if not sender.cancelled() and (failed := sender.exception()) is not None:
                    log.debug("sending text to Fish stopped: %r", failed)

    def _describe(self, error: BaseException) -> str:
        inner = _unwrap(error)
        if isinstance(inner, SpeechError):
            message = str(inner)
        elif isinstance(inner, AuthenticationError | FishPermissionError):
            message = f"Fish Audio refused the API key (HTTP {inner.status})"
        elif isinstance(inner, APIError):
            message = f"Fish Audio TTS failed (HTTP {inner.status}){_detail(inner.body)}"
        elif type(inner).__name__ == "WebSocketUpgradeError":
            response = getattr(inner, "response", None)
            status = getattr(response, "status_code", None)
            body = _body_message(_response_text(response))
            if status in (401, 403):
                message = f"Fish Audio refused the API key (HTTP {status}){_detail(body)}"
            elif status == 402:
                message = (
                    "Fish Audio says the account has no credit left: top up the API balance"
                    f" (HTTP 402){_detail(body)}"
                )
            else:
                message = (
                    f"Fish Audio refused the live TTS connection (HTTP {status}){_detail(body)}"
                )
        elif (closed := _close_of(inner)) is not None:
            code, reason = closed
            message = f"Fish Audio closed the live TTS session (code {code}){_detail(reason)}"
        elif isinstance(inner, FishAudioError):
            message = f"Fish Audio TTS failed: {inner}"
        elif isinstance(inner, httpx.HTTPError):
            message = f"Could not reach Fish Audio ({type(inner).__name__})"
        else:
            message = f"Fish Audio TTS failed ({type(inner).__name__})"
        return redact(message, [self._api_key])


class FishTranscriber:
    """``Transcriber`` through Fish Audio's ASR (``POST /v1/asr``)."""

    def __init__(self, *, api_key: str, base_url: str, timeout: float = 60.0) -> None:
        self._api_key = api_key
        self._client = AsyncFishAudio(api_key=api_key, base_url=base_url, timeout=timeout)

    def __repr__(self) -> str:
        return "FishTranscriber()"

    async def aclose(self) -> None:
        await self._client.close()

    async def transcribe(self, audio: bytes, mime_type: str) -> Transcription:
        try:
            # The service reads the container itself; mime_type is only for our own checks.
            result = await self._client.asr.transcribe(audio=audio, include_timestamps=False)
        except (AuthenticationError, FishPermissionError) as error:
            raise TranscriberError(
                f"Fish Audio refused the API key (HTTP {error.status})"
            ) from None
        except RateLimitError:
            raise TranscriberError(
                "Fish Audio is rate limiting speech recognition (HTTP 429)"
            ) from None
        except APIError as error:
            detail = redact(_detail(error.message), [self._api_key])
            if error.status == 402:
                raise TranscriberError(
                    "Fish Audio says the account has no credit left: top up the API balance"
                    f" (HTTP 402){detail}"
                ) from None
            raise TranscriberError(
                f"Fish Audio speech recognition failed (HTTP {error.status}){detail}"
            ) from None
        except httpx.TimeoutException:
            raise TranscriberError("Fish Audio speech recognition timed out") from None
        except httpx.HTTPError as error:
            raise TranscriberError(f"Could not reach Fish Audio ({type(error).__name__})") from None
        except ValueError:
            # pydantic's ValidationError or a body that is not JSON
            raise TranscriberError(
                "Fish Audio answered speech recognition with something unexpected"
            ) from None
        # The current API reports the duration in seconds (older SDK docs said milliseconds).
        duration = getattr(result, "duration", None)
        duration_ms = round(float(duration) * 1000) if isinstance(duration, int | float) else None
        return Transcription(text=str(result.text).strip(), duration_ms=duration_ms)


async def _close_quietly(stream: AsyncGenerator[bytes, None]) -> None:
    """Close the client's generator; it reports its own closing as an exception group."""
    try:
        await stream.aclose()
    except BaseExceptionGroup as group:
        rest = group.split(GeneratorExit)[1]
        if rest is not None:
            log.debug("closing the Fish stream: %r", rest)
    except Exception as error:
        log.debug("closing the Fish stream: %r", error)


async def _keep_refusal_body(response: httpx.Response) -> None:
    """Read the body of a refused WebSocket upgrade while it can still be read: ``httpx_ws``
    raises with the response, but closes it unread, and Fish's reason is in that body."""
    if response.request.headers.get("upgrade", "").lower() == "websocket" and (
        response.status_code != 101
    ):
        await response.aread()


def _text(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else repr(value)


def _event_text(data: dict[str, Any]) -> str:
    """An ``error`` event in words: its message, then any other fields it carries."""
    words = _text(data.get("error") or data.get("message"))
    extra = {k: v for k, v in data.items() if k not in ("event", "error", "message")}
    return f"{words} {extra}" if extra else words


def _detail(text: str | None) -> str:
    text = (text or "").strip()
    return f": {text[:300]}" if text else ""


def _body_message(body: str | None) -> str | None:
    """The ``message`` (or ``detail``) of a JSON error body; the body itself otherwise."""
    try:
        data = json.loads(body or "")
    except ValueError:
        return body
    if isinstance(data, dict):
        found = data.get("message") or data.get("detail")
        if isinstance(found, str) and found:
            return found
    return body


def _response_text(response: object) -> str | None:
    try:
        text = getattr(response, "text", None)
    except Exception:  # the body was never read
        return None
    return text if isinstance(text, str) else None


def _close_of(error: BaseException) -> tuple[int, str] | None:
    """The close code and reason of the WebSocket Fish closed, if that is what ``error`` is
    (or was raised from: the SDK replaces it with a bare "disconnected")."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            return None
        code = getattr(seen, "code", None)
        if type(seen).__name__ == "WebSocketDisconnect" and isinstance(code, int):
            return code, str(getattr(seen, "reason", "") or "")
        seen = seen.__cause__ or seen.__context__
    return None


def _unwrap(error: BaseException) -> BaseException:
    """The first real cause inside the exception groups anyio wraps WebSocket errors in."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error

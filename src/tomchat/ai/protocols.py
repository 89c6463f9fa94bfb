"""The seams between the conversation and whoever writes, speaks or listens."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from tomchat.domain.errors import TomchatError

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatTurn:
    role: Role
    content: str


class ChatModelError(TomchatError):
    """The model failed; ``str(error)`` is safe to show to the room (no secrets)."""


class ChatModel(Protocol):
    def stream_reply(self, turns: Sequence[ChatTurn]) -> AsyncIterator[str]:
        """Yield the reply's text in pieces as they are produced.

        Raises ``ChatModelError`` on failure. Closing the iterator (``aclose`` or task
        cancellation) must end the upstream request at once.
        """
        ...

    async def aclose(self) -> None: ...


class SpeechError(TomchatError):
    pass


class Speech(Protocol):
    format: str  # file extension / container of the audio produced, e.g. "mp3"

    def speak(self, text: AsyncIterable[str], voice: str | None) -> AsyncIterator[bytes]:
        """Turn streamed text into streamed audio bytes."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Transcription:
    text: str
    duration_ms: int | None = None


class TranscriberError(TomchatError):
    pass


class Transcriber(Protocol):
    async def transcribe(self, audio: bytes, mime_type: str) -> Transcription: ...

    async def aclose(self) -> None: ...

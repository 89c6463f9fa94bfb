"""The seams between the conversation and whoever writes, speaks or listens."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from tomchat.domain.errors import TomchatError
from tomchat.domain.events import ReplyStatus, TokenUsage

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatTurn:
    role: Role
    content: str


# The system prompt of a request for a summary of a room's older turns (chat/memory.py); the
# demo model recognises it and summarises deterministically.
SUMMARY_INSTRUCTION = (
    "You keep the memory of a group chat. Summarise the conversation below in at most 150 "
    "words: who said what, names, facts, promises and open questions. Write plain prose, "
    "no preamble."
)


class ChatModelError(TomchatError):
    """The model failed; ``str(error)`` is safe to show to the room (no secrets)."""


# Finish reasons (OpenAI's and the other names providers use) that end a reply early.
_TRUNCATED = frozenset({"length", "max_tokens", "max_output_tokens", "model_length"})
_FILTERED = frozenset({"content_filter", "refusal", "safety", "recitation", "blocked"})


@dataclass(frozen=True, slots=True)
class ReplyEnd:
    """How a reply ended, as the provider said: yielded once, after the reply's last text."""

    finish_reason: str | None = None
    usage: TokenUsage | None = None
    # The model refused: its refusal text was the reply's text.
    refused: bool = False

    @property
    def status(self) -> ReplyStatus:
        reason = (self.finish_reason or "").lower()
        if self.refused or reason in _FILTERED:
            return "filtered"
        if reason in _TRUNCATED:
            return "truncated"
        return "complete"


ReplyPiece = str | ReplyEnd


class ChatModel(Protocol):
    def stream_reply(self, turns: Sequence[ChatTurn]) -> AsyncIterator[ReplyPiece]:
        """Yield the reply's text in pieces as they are produced, then (if the provider
        said how the reply ended) one :class:`ReplyEnd`.

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

"""Every payload the server sends: Socket.IO events, Socket.IO acks and the REST pages of
messages and events. The one place their shapes are written down.

Fields are snake_case here and camelCase on the wire (``rename="camel"``). Which keys a
payload carries is part of the protocol, so two kinds of optional field are told apart:
a field typed ``X | None`` is always present (``null`` when empty), a field defaulting to
``UNSET`` is left out of the JSON when unset. ``python -m tomchat.wire.schema`` writes the
JSON Schema of these types, from which the web client's TypeScript types are generated
(``scripts/gen-wire-types``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias, cast

import msgspec
from msgspec import UNSET, UnsetType, field

from tomchat.domain.events import MessageSource, ReplyStatus

#: A message's status in the projection: a reply still being written is ``streaming``.
MessageStatus: TypeAlias = Literal[ReplyStatus, "streaming"]


def doc(text: str) -> msgspec.Meta:
    """``Annotated[T, doc("...")]``: a field described in the JSON Schema (and so in the
    generated TypeScript)."""
    return msgspec.Meta(description=text)


Timestamp = Annotated[str, doc("ISO 8601, UTC, with microseconds")]
RoomVersion = Annotated[int, doc("The room version of the event this payload shows")]


class Payload(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Base of every server-sent payload."""


# ---------------------------------------------------------------------------------------
# Items of snapshots and pages, and the live events


class Message(Payload, frozen=True, kw_only=True):
    """A user message or a reply: ``messages[]`` items and the ``message`` / ``aiComplete``
    events."""

    id: str
    room_id: str
    content: str
    username: str
    timestamp: Timestamp
    is_ai: bool = field(name="isAI")
    audio_url: str | None
    status: MessageStatus
    source: Annotated[
        MessageSource | UnsetType,
        doc("How a user message was posted; on `messages[]` items and the `message` event"),
    ] = UNSET
    client_id: Annotated[
        str | UnsetType | None, doc("The sender's idempotency key; on the `message` event only")
    ] = UNSET
    error: Annotated[
        str | UnsetType | None, doc("Why a reply failed; on the `aiComplete` event only")
    ] = UNSET
    version: RoomVersion


class Streaming(Payload, frozen=True, kw_only=True):
    """A reply still being written, as a snapshot's ``streaming[]`` lists it."""

    message_id: str
    room_id: str
    username: str
    content: Annotated[str, doc("The text so far: exactly the chunks up to the snapshot's version")]
    timestamp: Timestamp
    audio_url: Annotated[
        str | None, doc("Set when the reply's voice arrived before the snapshot was read")
    ]
    version: Annotated[int, doc("The version of the reply's `reply.started`")]


class RawEvent(Payload, frozen=True, kw_only=True):
    """One entry of a room's log: ``events[]`` items, the REST event pages and the replay."""

    version: int
    type: str
    data: dict[str, Any]
    recorded_at: Timestamp


class AiStart(Payload, frozen=True, kw_only=True):
    """The ``aiStart`` event: a reply begins."""

    message_id: str
    room_id: str
    username: str
    timestamp: Timestamp
    in_reply_to: Annotated[list[str], doc("The user messages the reply answers, in log order")]
    version: RoomVersion


class AiTextChunk(Payload, frozen=True, kw_only=True):
    """The ``aiTextChunk`` event: the next piece of a reply's text."""

    message_id: str
    room_id: str
    chunk: str
    index: int
    version: RoomVersion


class AiAudio(Payload, frozen=True, kw_only=True):
    """The ``aiAudio`` event: a reply's voice is ready (or has grown); ``null`` when it
    could not be made."""

    message_id: str
    room_id: str
    audio_url: str | None
    version: RoomVersion


class Presence(Payload, frozen=True, kw_only=True):
    """The ``presence`` event: who is in the room, on every process."""

    room_id: str
    members: list[str]


# ---------------------------------------------------------------------------------------
# Acks


class SnapshotAck(Payload, frozen=True, kw_only=True):
    """``joinRoom`` / ``resync``: the room's latest messages and the replies in progress."""

    ok: Literal[True]
    room_id: str
    version: int
    messages: list[Message]
    streaming: list[Streaming]
    has_more: bool
    reset: Annotated[
        Literal[True] | UnsetType,
        doc(
            "Present when the client asked to catch up from a version too far behind (or ahead of)"
            " the log: it must start over from this snapshot"
        ),
    ] = UNSET


class CatchUpAck(Payload, frozen=True, kw_only=True):
    """``joinRoom`` / ``resync`` with ``since``: the events after it, up to ``version``."""

    ok: Literal[True]
    room_id: str
    version: int
    events: list[RawEvent]


class SendAck(Payload, frozen=True, kw_only=True):
    """``sendMessage``: the message's id and version (the first ones, for a retried
    ``clientId``)."""

    ok: Literal[True]
    message_id: str
    version: int


class VoiceAck(Payload, frozen=True, kw_only=True):
    """``sendVoiceMessage``: the posted message, with what was heard and the recording."""

    ok: Literal[True]
    message_id: str
    version: int
    content: str
    audio_url: str | None


class OkAck(Payload, frozen=True, kw_only=True):
    """``stopGeneration`` and ``leaveRoom``."""

    ok: Literal[True]


class ErrorBody(Payload, frozen=True, kw_only=True):
    code: str
    message: str
    retry_after: Annotated[
        float | UnsetType, doc("Seconds until it may be tried again (`rate_limited`)")
    ] = UNSET


class ErrorAck(Payload, frozen=True, kw_only=True):
    """Any request refused or failed: nothing was appended."""

    ok: Literal[False]
    error: ErrorBody


Ack: TypeAlias = SnapshotAck | CatchUpAck | SendAck | VoiceAck | OkAck | ErrorAck
LiveEvent: TypeAlias = Message | AiStart | AiTextChunk | AiAudio


# ---------------------------------------------------------------------------------------
# REST pages (Litestar encodes these itself)


class MessagePage(msgspec.Struct, frozen=True, rename="camel"):
    messages: list[Message]
    next_before: int | None


class EventPage(msgspec.Struct, frozen=True, rename="camel"):
    events: list[RawEvent]
    next: int | None
    version: int


def to_wire(payload: msgspec.Struct) -> dict[str, Any]:
    """The JSON object of a payload, for python-socketio to send (it encodes plain data)."""
    return cast(dict[str, Any], msgspec.to_builtins(payload))


_encoder = msgspec.json.Encoder()
_ASCII, _NOT_LEAD, _NOT_ASTRAL = bytes(range(0x80)), bytes(range(0xC0)), bytes(range(0xF0))


def wire_size(payload: msgspec.Struct) -> int:
    """The bytes ``payload`` takes as JSON in a Socket.IO packet.

    python-socketio writes JSON with every non-ASCII character escaped: ``\\uXXXX`` (six
    bytes) for one of the BMP, two of those for one beyond. Counted from msgspec's UTF-8 by
    byte class: each lead byte starts a character (six bytes), a 4-byte one's lead byte
    (0xF0-0xF7) six more; continuation bytes take nothing.
    """
    encoded = _encoder.encode(payload)
    non_ascii = len(encoded.translate(None, _ASCII))
    leads = len(encoded.translate(None, _NOT_LEAD))
    astral = len(encoded.translate(None, _NOT_ASTRAL))
    return len(encoded) - non_ascii + 6 * leads + 6 * astral


def error(code: str, message: str, *, retry_after: float | None = None) -> ErrorAck:
    body = ErrorBody(
        code=code, message=message, retry_after=UNSET if retry_after is None else retry_after
    )
    return ErrorAck(ok=False, error=body)


OK = OkAck(ok=True)

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
    stopped_by: Annotated[
        str | UnsetType | None,
        doc("Who stopped a `stopped` reply (a username, null if unknown); on `aiComplete` only"),
    ] = UNSET
    version: RoomVersion
    character_id: Annotated[
        str | None,
        doc("A reply's character (library id); null for user messages and replies before casts"),
    ] = None
    edited: Annotated[bool, doc("The author changed the text (`message.edited`)")] = False
    deleted: Annotated[bool, doc("Deleted: the text is gone for good (`message.redacted`)")] = False
    alternative_of: Annotated[
        str | None, doc("A regenerated reply: the first reply of its slot")
    ] = None
    alternatives: Annotated[
        list[str] | UnsetType,
        doc(
            "On the first reply of a slot that has alternatives, in snapshots and pages: every"
            " alternative's id, in order (the first reply's own id first)"
        ),
    ] = UNSET
    chosen: Annotated[
        bool, doc("The alternative its slot shows (always true for a slot of one)")
    ] = True


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
    alternative_of: Annotated[
        str | None, doc("A regenerated reply: the first reply of its slot")
    ] = None


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
    character_id: Annotated[str | None, doc("The replying character (library id)")] = None
    alternative_of: Annotated[
        str | None,
        doc("A regenerated reply: the first reply of the slot it becomes the shown alternative of"),
    ] = None


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
    error: Annotated[
        str | UnsetType,
        doc(
            "Why the voice is missing (`audioUrl` null) or was cut short; present only when"
            " speech failed"
        ),
    ] = UNSET
    version: RoomVersion


class CastItem(Payload, frozen=True, kw_only=True):
    """A character of a room's cast, at the revision the room uses."""

    id: str
    name: str
    revision: int
    avatar_url: Annotated[str, doc("The character's picture at that revision")]


ReplyModeName = Literal["single", "all"]


class MessageEdited(Payload, frozen=True, kw_only=True):
    """The ``messageEdited`` event: a message's new text."""

    room_id: str
    message_id: str
    content: str
    version: RoomVersion


class MessageDeleted(Payload, frozen=True, kw_only=True):
    """The ``messageDeleted`` event: drop the message's text (and audio); the words are gone."""

    room_id: str
    message_id: str
    by: str
    version: RoomVersion


class AlternativeChosen(Payload, frozen=True, kw_only=True):
    """The ``alternativeChosen`` event: the slot ``alternativeOf`` now shows ``messageId``."""

    room_id: str
    message_id: str
    alternative_of: str
    version: RoomVersion


class Presence(Payload, frozen=True, kw_only=True):
    """The ``presence`` event: who is in the room, on every process."""

    room_id: str
    members: list[str]
    hosts: Annotated[
        list[str] | UnsetType, doc("The members who host the room (a subset of `members`)")
    ] = UNSET


class RoomChanged(Payload, frozen=True, kw_only=True):
    """The ``roomChanged`` event: the host renamed, (un)locked or recast the room; the room's
    whole state after the change."""

    room_id: str
    name: str
    locked: bool
    cast: list[CastItem]
    reply_mode: Annotated[ReplyModeName, doc("Who answers unnamed messages")]
    version: RoomVersion


class Kicked(Payload, frozen=True, kw_only=True):
    """The ``kicked`` event, to the sockets of a member the host removed (they have left)."""

    room_id: str
    by: str


class You(Payload, frozen=True, kw_only=True):
    """Who the server takes this socket for in the room it joined."""

    username: str
    role: Literal["host", "member"]


class Typing(Payload, frozen=True, kw_only=True):
    """The ``typing`` event: someone in the room is writing. Ephemeral: never logged, so
    it carries no version; sent to every connection in the room but the writer's."""

    room_id: str
    username: str


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
    you: Annotated[You | UnsetType, doc("`joinRoom` only: the name bound and the role")] = UNSET
    member_key: Annotated[
        str | UnsetType,
        doc("`joinRoom` only, when the join sent none: the key the server made; keep it"),
    ] = UNSET
    locked: Annotated[bool | UnsetType, doc("`joinRoom` only: no new names may join")] = UNSET
    cast: Annotated[list[CastItem] | UnsetType, doc("The room's cast (on `joinRoom`)")] = UNSET
    reply_mode: Annotated[
        ReplyModeName | UnsetType, doc("The room's reply mode (on `joinRoom`)")
    ] = UNSET


class CatchUpAck(Payload, frozen=True, kw_only=True):
    """``joinRoom`` / ``resync`` with ``since``: the events after it, up to ``version``."""

    ok: Literal[True]
    room_id: str
    version: int
    events: list[RawEvent]
    you: Annotated[You | UnsetType, doc("`joinRoom` only: the name bound and the role")] = UNSET
    member_key: Annotated[
        str | UnsetType,
        doc("`joinRoom` only, when the join sent none: the key the server made; keep it"),
    ] = UNSET
    locked: Annotated[bool | UnsetType, doc("`joinRoom` only: no new names may join")] = UNSET
    cast: Annotated[list[CastItem] | UnsetType, doc("The room's cast (on `joinRoom`)")] = UNSET
    reply_mode: Annotated[
        ReplyModeName | UnsetType, doc("The room's reply mode (on `joinRoom`)")
    ] = UNSET


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


class CastAck(Payload, frozen=True, kw_only=True):
    """``setCast``: the room's new cast, recorded at ``version``."""

    ok: Literal[True]
    room_id: str
    version: int
    cast: list[CastItem]
    reply_mode: ReplyModeName


class OkAck(Payload, frozen=True, kw_only=True):
    """``stopGeneration``, ``leaveRoom`` and ``typing``."""

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


Ack: TypeAlias = SnapshotAck | CatchUpAck | SendAck | VoiceAck | OkAck | ErrorAck | CastAck
LiveEvent: TypeAlias = (
    Message
    | AiStart
    | AiTextChunk
    | AiAudio
    | RoomChanged
    | MessageEdited
    | MessageDeleted
    | AlternativeChosen
)


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

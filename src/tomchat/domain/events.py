"""The event model: one tagged union, immutable records.

The struct fields are the event's ``data``; the tag is its ``type``.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import datetime
from typing import Literal

import msgspec

MessageSource = Literal["text", "voice"]
ReplyStatus = Literal["complete", "stopped", "failed", "interrupted", "truncated", "filtered"]
# Who answers a user message that names no character: the last speaker, or every character.
ReplyMode = Literal["single", "all"]


class CastMember(msgspec.Struct, frozen=True):
    """A character of a room's cast, at the library revision the room uses."""

    id: str
    name: str
    revision: int = 1


class Avatar(msgspec.Struct, frozen=True):
    """A character's picture: the bytes are kept by their SHA-256 (``store.characters``)."""

    digest: str
    content_type: str
    size: int


class _Event(msgspec.Struct, frozen=True, tag_field="type", forbid_unknown_fields=False):
    pass


class RoomCreated(_Event, frozen=True, tag="room.created"):
    name: str
    character: str  # the first of the cast's names (what clients before casts read)
    # Rooms before casts had one character: the upcaster (``codec``) gives them a cast of it.
    cast: tuple[CastMember, ...] = ()
    reply_mode: ReplyMode = "single"


class MessagePosted(_Event, frozen=True, tag="message.posted"):
    message_id: str
    username: str
    content: str
    source: MessageSource = "text"
    audio_url: str | None = None
    client_id: str | None = None


class ReplyStarted(_Event, frozen=True, tag="reply.started"):
    message_id: str
    character: str
    in_reply_to: tuple[str, ...] = ()
    character_id: str | None = None  # None: a reply from before casts (its room's only one)
    # A regenerated reply: the first reply of its slot (None for a slot's first reply).
    alternative_of: str | None = None


class ReplyChunk(_Event, frozen=True, tag="reply.chunk"):
    message_id: str
    index: int
    text: str


class ReplyAudio(_Event, frozen=True, tag="reply.audio"):
    message_id: str
    audio_url: str | None
    format: str = "mp3"
    bytes: int = 0
    duration_ms: int | None = None
    # Why the voice is missing or cut short (the provider's words); events from before it was
    # kept decode with None.
    error: str | None = None


class TokenUsage(msgspec.Struct, frozen=True):
    """Token counts as the model's provider reported them (either may be missing)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ReplyCompleted(_Event, frozen=True, tag="reply.completed"):
    message_id: str
    content: str
    status: ReplyStatus
    error: str | None = None
    # The provider's own word for how the reply ended ("stop", "length", …), if it gave one.
    finish_reason: str | None = None
    usage: TokenUsage | None = None
    # Who asked to stop a ``stopped`` reply (a username), when it was known.
    stopped_by: str | None = None


class MemorySummarized(_Event, frozen=True, tag="memory.summarized"):
    """What the room said up to ``through_version``, summarised for later model contexts."""

    character_id: str | None
    through_version: int
    summary: str


class RoomLocked(_Event, frozen=True, tag="room.locked"):
    """The host locked (or unlocked) the room: no new names may join while locked."""

    locked: bool
    by: str


class RoomRenamed(_Event, frozen=True, tag="room.renamed"):
    name: str
    by: str


class MemberKicked(_Event, frozen=True, tag="member.kicked"):
    """The host removed ``username``; the key bound to that name may not come back."""

    username: str
    by: str


class RoomCastChanged(_Event, frozen=True, tag="room.cast_changed"):
    cast: tuple[CastMember, ...]
    reply_mode: ReplyMode = "single"
    by: str | None = None


class _CharacterState(_Event, frozen=True):
    """A character's whole state, as ``character.created`` and ``character.updated`` hold it."""

    id: str
    name: str
    system_prompt: str
    greeting: str
    description: str = ""
    voice: str | None = None
    example_dialogue: str = ""
    avatar: Avatar | None = None


class CharacterCreated(_CharacterState, frozen=True, tag="character.created"):
    """A character joins the library (in its own stream, ``character:<id>``)."""


class CharacterUpdated(_CharacterState, frozen=True, tag="character.updated"):
    """The character's whole new state: its revision is the version of this event."""


class CharacterArchived(_Event, frozen=True, tag="character.archived"):
    """Gone from the library's listing; rooms whose cast has it keep their revision."""

    id: str


class ReplyChosen(_Event, frozen=True, tag="reply.chosen"):
    """The alternative of its slot now shown, and used in later model contexts."""

    message_id: str


class MessageEdited(_Event, frozen=True, tag="message.edited"):
    message_id: str
    content: str


class MessageRedacted(_Event, frozen=True, tag="message.redacted"):
    """A message deleted: appending this also strips the words from the message's earlier
    events, in the same transaction (``domain.redaction``)."""

    message_id: str
    by: str
    reason: str | None = None


class RoomForked(_Event, frozen=True, tag="room.forked"):
    """The first event of a room copied from another room's visible transcript at a version."""

    from_room: str
    at_version: int
    name: str
    cast: tuple[CastMember, ...] = ()
    reply_mode: ReplyMode = "single"


class MessageImported(_Event, frozen=True, tag="message.imported"):
    """A message copied into a forked room, with its original author and time."""

    message_id: str
    username: str
    is_ai: bool
    content: str
    status: ReplyStatus = "complete"
    original_at: datetime | None = None
    character_id: str | None = None


Event = (
    RoomCreated
    | MessagePosted
    | ReplyStarted
    | ReplyChunk
    | ReplyAudio
    | ReplyCompleted
    | MemorySummarized
    | RoomLocked
    | RoomRenamed
    | MemberKicked
    | RoomCastChanged
    | CharacterCreated
    | CharacterUpdated
    | CharacterArchived
    | ReplyChosen
    | MessageEdited
    | MessageRedacted
    | RoomForked
    | MessageImported
)

EVENT_TYPES: frozenset[str] = frozenset(
    t.__struct_config__.tag  # type: ignore[misc]
    for t in (
        RoomCreated,
        MessagePosted,
        ReplyStarted,
        ReplyChunk,
        ReplyAudio,
        ReplyCompleted,
        MemorySummarized,
        RoomLocked,
        RoomRenamed,
        MemberKicked,
        RoomCastChanged,
        CharacterCreated,
        CharacterUpdated,
        CharacterArchived,
        ReplyChosen,
        MessageEdited,
        MessageRedacted,
        RoomForked,
        MessageImported,
    )
)


def event_type(event: Event) -> str:
    tag = event.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def new_event_id() -> uuid.UUID:
    """A version-7 UUID (RFC 9562): milliseconds since the epoch, then 74 random bits.

    Ids made one after another sort one after another, so the unique index on ``event_id``
    grows at its end; random (version 4) ids put every event on a page of its own in that
    index, and each commit wrote and synced one such page per event.
    """
    ms = time.time_ns() // 1_000_000
    # Uniqueness is all an event id needs (none is a secret): the module's generator, seeded
    # from the OS and reseeded in a forked child, spares a system call per id.
    rand = random.getrandbits(80)
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | (rand >> 68) << 64
        | 0b10 << 62
        | rand & 0x3FFF_FFFF_FFFF_FFFF
    )
    # ``UUID(int=…)`` checks its arguments in Python, twice the cost of making the id: a
    # UUID is its ``int`` and ``is_safe`` slots, set here as ``__init__`` would set them.
    made = _new_object(uuid.UUID)
    _set_slot(made, "int", value)
    _set_slot(made, "is_safe", _UNKNOWN_SAFETY)
    return made


_new_object = object.__new__
_set_slot = object.__setattr__
_UNKNOWN_SAFETY = uuid.SafeUUID.unknown


class NewEvent(msgspec.Struct, frozen=True):
    """An event on its way into the store. ``event_id`` makes the append idempotent."""

    event: Event
    event_id: uuid.UUID = msgspec.field(default_factory=new_event_id)


class RecordedEvent(msgspec.Struct, frozen=True):
    """An event as the store holds it."""

    position: int
    room_id: str
    version: int
    event_id: uuid.UUID
    recorded_at: datetime
    event: Event

    @property
    def type(self) -> str:
        return event_type(self.event)


def new_message_id() -> str:
    return uuid.uuid4().hex

"""Events and rows in the shapes clients see (the payload types are in ``payloads``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import assert_never, cast

from msgspec import UNSET

from tomchat.domain.codec import data_dict
from tomchat.domain.events import (
    CastMember,
    CharacterArchived,
    CharacterCreated,
    CharacterUpdated,
    MemberKicked,
    MemorySummarized,
    MessagePosted,
    MessageSource,
    RecordedEvent,
    ReplyAudio,
    ReplyChunk,
    ReplyCompleted,
    ReplyMode,
    ReplyStarted,
    RoomCastChanged,
    RoomCreated,
    RoomLocked,
    RoomRenamed,
)
from tomchat.domain.transcript import MessageRow
from tomchat.store.rooms import StreamingReply
from tomchat.wire.payloads import (
    AiAudio,
    AiStart,
    AiTextChunk,
    CastItem,
    LiveEvent,
    Message,
    MessageStatus,
    RawEvent,
    RoomChanged,
    Streaming,
)


@dataclass(slots=True)
class ReplyInfo:
    """What an ``aiComplete`` Message needs beyond the completion event itself."""

    author: str
    started_at: datetime
    audio_url: str | None = None
    character_id: str | None = None


@dataclass(frozen=True, slots=True)
class RoomState:
    """What a ``roomChanged`` payload needs beyond the event: the room as it is now."""

    name: str
    locked: bool
    cast: tuple[CastMember, ...] = ()
    reply_mode: ReplyMode = "single"


def _state_from(event: RoomRenamed | RoomLocked | RoomCastChanged, room: str) -> RoomState:
    """The room's state as far as the event alone tells (when the room cannot be read)."""
    if isinstance(event, RoomRenamed):
        return RoomState(event.name, False)
    if isinstance(event, RoomLocked):
        return RoomState(room, event.locked)
    return RoomState(room, False, event.cast, event.reply_mode)


def iso(at: datetime) -> str:
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


def avatar_url(character_id: str, revision: int) -> str:
    return f"/api/characters/{character_id}/avatar?revision={revision}"


def cast_items(cast: tuple[CastMember, ...] | list[CastMember]) -> list[CastItem]:
    return [
        CastItem(id=m.id, name=m.name, revision=m.revision, avatar_url=avatar_url(m.id, m.revision))
        for m in cast
    ]


def message(row: MessageRow) -> Message:
    return Message(
        id=row.id,
        room_id=row.room_id,
        content=row.content,
        username=row.author,
        timestamp=iso(row.created_at),
        is_ai=row.is_ai,
        audio_url=row.audio_url,
        status=cast(MessageStatus, row.status),
        source=cast(MessageSource, row.source),
        version=row.last_version,
        character_id=row.character_id,
    )


def streaming(item: StreamingReply) -> Streaming:
    return Streaming(
        message_id=item.row.id,
        room_id=item.row.room_id,
        username=item.row.author,
        content=item.text,
        timestamp=iso(item.row.created_at),
        audio_url=item.row.audio_url,
        version=item.row.first_version,
    )


def raw_event(recorded: RecordedEvent) -> RawEvent:
    return RawEvent(
        version=recorded.version,
        type=recorded.type,
        data=data_dict(recorded.event),
        recorded_at=iso(recorded.recorded_at),
    )


def live_event(
    recorded: RecordedEvent, reply: ReplyInfo | None = None, room_state: RoomState | None = None
) -> tuple[str, LiveEvent] | None:
    """The Socket.IO event a logged event becomes, or None for events clients never see live.

    ``reply`` completes an ``aiComplete`` Message, ``room_state`` a ``roomChanged``.
    """
    event, room, v = recorded.event, recorded.room_id, recorded.version
    match event:
        case MessagePosted():
            return "message", Message(
                id=event.message_id,
                room_id=room,
                content=event.content,
                username=event.username,
                timestamp=iso(recorded.recorded_at),
                is_ai=False,
                audio_url=event.audio_url,
                status="complete",
                source=event.source,
                client_id=event.client_id,
                version=v,
            )
        case ReplyStarted():
            return "aiStart", AiStart(
                message_id=event.message_id,
                room_id=room,
                username=event.character,
                timestamp=iso(recorded.recorded_at),
                in_reply_to=list(event.in_reply_to),
                version=v,
                character_id=event.character_id,
            )
        case ReplyChunk():
            return "aiTextChunk", AiTextChunk(
                message_id=event.message_id,
                room_id=room,
                chunk=event.text,
                index=event.index,
                version=v,
            )
        case ReplyAudio():
            return "aiAudio", AiAudio(
                message_id=event.message_id,
                room_id=room,
                audio_url=event.audio_url,
                error=UNSET if event.error is None else event.error,
                version=v,
            )
        case ReplyCompleted():
            info = reply or ReplyInfo("", recorded.recorded_at)
            return "aiComplete", Message(
                id=event.message_id,
                room_id=room,
                content=event.content,
                username=info.author,
                timestamp=iso(info.started_at),
                is_ai=True,
                audio_url=info.audio_url,
                status=event.status,
                error=event.error,
                stopped_by=event.stopped_by if event.status == "stopped" else UNSET,
                version=v,
                character_id=info.character_id,
            )
        case RoomCreated():
            return None  # clients learn a room's name and character when they join
        case MemorySummarized():
            return None  # the models' memory, never shown
        case RoomRenamed() | RoomLocked() | RoomCastChanged():
            state = room_state or _state_from(event, room)
            return "roomChanged", RoomChanged(
                room_id=room,
                name=state.name,
                locked=state.locked,
                cast=cast_items(state.cast),
                reply_mode=state.reply_mode,
                version=v,
            )
        case MemberKicked():
            return None  # the kicked sockets are told by the live edge; presence follows
        case CharacterCreated() | CharacterUpdated() | CharacterArchived():
            return None  # the library's own streams: no room hears them
        case _:
            assert_never(event)

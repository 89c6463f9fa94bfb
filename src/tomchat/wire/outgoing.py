"""Events and rows in the shapes clients see over Socket.IO and REST."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, assert_never

from tomchat.domain.codec import data_dict
from tomchat.domain.events import (
    MessagePosted,
    RecordedEvent,
    ReplyAudio,
    ReplyChunk,
    ReplyCompleted,
    ReplyStarted,
    RoomCreated,
)
from tomchat.domain.transcript import MessageRow
from tomchat.store.rooms import StreamingReply


@dataclass(slots=True)
class ReplyInfo:
    """What an ``aiComplete`` Message needs beyond the completion event itself."""

    author: str
    started_at: datetime
    audio_url: str | None = None


def iso(at: datetime) -> str:
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


def message(row: MessageRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "roomId": row.room_id,
        "content": row.content,
        "username": row.author,
        "timestamp": iso(row.created_at),
        "isAI": row.is_ai,
        "audioUrl": row.audio_url,
        "status": row.status,
        "source": row.source,
        "version": row.last_version,
    }


def streaming(item: StreamingReply) -> dict[str, Any]:
    return {
        "messageId": item.row.id,
        "roomId": item.row.room_id,
        "username": item.row.author,
        "content": item.text,
        "timestamp": iso(item.row.created_at),
        "audioUrl": item.row.audio_url,
        "version": item.row.first_version,
    }


def raw_event(recorded: RecordedEvent) -> dict[str, Any]:
    return {
        "version": recorded.version,
        "type": recorded.type,
        "data": data_dict(recorded.event),
        "recordedAt": iso(recorded.recorded_at),
    }


def live_event(
    recorded: RecordedEvent, reply: ReplyInfo | None = None
) -> tuple[str, dict[str, Any]] | None:
    """The Socket.IO event a logged event becomes, or None for events clients never see live.

    ``reply`` completes an ``aiComplete`` Message.
    """
    event, room, v = recorded.event, recorded.room_id, recorded.version
    match event:
        case MessagePosted():
            return "message", {
                "id": event.message_id,
                "roomId": room,
                "content": event.content,
                "username": event.username,
                "timestamp": iso(recorded.recorded_at),
                "isAI": False,
                "audioUrl": event.audio_url,
                "status": "complete",
                "source": event.source,
                "clientId": event.client_id,
                "version": v,
            }
        case ReplyStarted():
            return "aiStart", {
                "messageId": event.message_id,
                "roomId": room,
                "username": event.character,
                "timestamp": iso(recorded.recorded_at),
                "inReplyTo": list(event.in_reply_to),
                "version": v,
            }
        case ReplyChunk():
            return "aiTextChunk", {
                "messageId": event.message_id,
                "roomId": room,
                "chunk": event.text,
                "index": event.index,
                "version": v,
            }
        case ReplyAudio():
            return "aiAudio", {
                "messageId": event.message_id,
                "roomId": room,
                "audioUrl": event.audio_url,
                "version": v,
            }
        case ReplyCompleted():
            info = reply or ReplyInfo("", recorded.recorded_at)
            return "aiComplete", {
                "id": event.message_id,
                "roomId": room,
                "content": event.content,
                "username": info.author,
                "timestamp": iso(info.started_at),
                "isAI": True,
                "audioUrl": info.audio_url,
                "status": event.status,
                "error": event.error,
                "version": v,
            }
        case RoomCreated():
            return None  # clients learn a room's name and character when they join
        case _:
            assert_never(event)

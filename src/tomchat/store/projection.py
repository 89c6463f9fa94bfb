"""The inline ``messages`` projection: applied in the append's own transaction.

Chunks never touch the row (a streaming reply's text is rebuilt from its chunk events), so
the hot path of a streamed reply writes only to ``events``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tomchat.domain.events import (
    MessagePosted,
    RecordedEvent,
    ReplyAudio,
    ReplyCompleted,
    ReplyStarted,
    RoomCreated,
)
from tomchat.domain.transcript import POSTED, STREAMING
from tomchat.store.schema import messages, streams


async def project(
    conn: AsyncConnection, batch: Sequence[RecordedEvent], table: Table = messages
) -> None:
    inserts: list[dict[str, Any]] = []
    changes: list[tuple[str, dict[str, Any]]] = []
    for recorded in batch:
        event, at, v = recorded.event, recorded.recorded_at, recorded.version
        match event:
            case MessagePosted():
                inserts.append(
                    _row(recorded, event.message_id, event.username, False, event.content)
                    | {
                        "status": POSTED,
                        "source": event.source,
                        "audio_url": event.audio_url,
                        "completed_at": at,
                    }
                )
            case ReplyStarted():
                inserts.append(_row(recorded, event.message_id, event.character, True, ""))
            case ReplyAudio():
                changes.append(
                    (event.message_id, {"audio_url": event.audio_url, "last_version": v})
                )
            case ReplyCompleted():
                values = {
                    "content": event.content,
                    "status": event.status,
                    "completed_at": at,
                    "last_version": v,
                }
                changes.append((event.message_id, values))
            case RoomCreated():
                await conn.execute(
                    update(streams)
                    .where(streams.c.room_id == recorded.room_id)
                    .values(name=event.name, character=event.character, created_at=at)
                )
    if inserts:
        await conn.execute(table.insert(), inserts)
    # Updates go after the inserts of the same batch, in log order, so a reply started and
    # finished within one batch ends up in its final state.
    for message_id, values in changes:
        await conn.execute(
            update(table).where(table.c.id == bindparam("target_id")).values(**values),
            {"target_id": message_id},
        )


def _row(
    recorded: RecordedEvent, message_id: str, author: str, is_ai: bool, content: str
) -> dict[str, Any]:
    return {
        "id": message_id,
        "room_id": recorded.room_id,
        "author": author,
        "is_ai": is_ai,
        "content": content,
        "status": STREAMING,
        "source": "text",
        "audio_url": None,
        "created_at": recorded.recorded_at,
        "completed_at": None,
        "first_version": recorded.version,
        "last_version": recorded.version,
    }

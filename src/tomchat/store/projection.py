"""The inline ``messages`` projection: applied in the append's own transaction.

Chunks never touch the row (a streaming reply's text is rebuilt from its chunk events), so
the hot path of a streamed reply writes only to ``events``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, assert_never

import msgspec
from sqlalchemy import (
    ColumnElement,
    Connection,
    Executable,
    Table,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from tomchat.domain.character import slug
from tomchat.domain.events import (
    CastMember,
    CharacterArchived,
    CharacterCreated,
    CharacterUpdated,
    MemberKicked,
    MemorySummarized,
    MessageEdited,
    MessageImported,
    MessagePosted,
    MessageRedacted,
    RecordedEvent,
    ReplyAudio,
    ReplyChosen,
    ReplyChunk,
    ReplyCompleted,
    ReplyStarted,
    RoomCastChanged,
    RoomCreated,
    RoomForked,
    RoomLocked,
    RoomRenamed,
)
from tomchat.domain.transcript import POSTED, STREAMING
from tomchat.store.schema import characters, messages, streams

Statement = tuple[Executable, Any]


def projection_statements(
    batch: Sequence[RecordedEvent], table: Table = messages
) -> list[Statement]:
    """The writes that apply ``batch`` to the projection, in the order they must run.

    Chunks need none, so a batch of chunks costs the projection nothing.
    """
    out: list[Statement] = []
    inserts: list[dict[str, Any]] = []
    changes: list[Statement] = []
    for recorded in batch:
        event = recorded.event
        if type(event) is ReplyChunk:
            continue  # the bulk of every batch, and nothing to project
        at, v = recorded.recorded_at, recorded.version
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
                row = _row(recorded, event.message_id, event.character, True, "") | {
                    "character_id": event.character_id
                }
                if event.alternative_of is not None:
                    # The newest alternative is shown: hide the slot's others first. Rows
                    # inserted earlier in this batch must exist by then, so flush them.
                    row["alternative_of"] = event.alternative_of
                    _flush(out, table, inserts, changes)
                    out.append(_show(table, event.alternative_of, None))
                inserts.append(row)
            case ReplyAudio():
                changes.append(
                    _change(
                        table, event.message_id, {"audio_url": event.audio_url, "last_version": v}
                    )
                )
            case ReplyCompleted():
                values = {
                    "content": event.content,
                    "status": event.status,
                    "completed_at": at,
                    "last_version": v,
                }
                changes.append(_change(table, event.message_id, values))
            case RoomCreated():
                out.append(
                    (
                        update(streams)
                        .where(streams.c.room_id == recorded.room_id)
                        .values(
                            name=event.name,
                            character=event.character,
                            created_at=at,
                            cast=encode_cast(
                                event.cast or (CastMember(slug(event.character), event.character),)
                            ),
                            reply_mode=event.reply_mode,
                        ),
                        None,
                    )
                )
            case RoomCastChanged():
                recast: dict[str, Any] = {
                    "cast": encode_cast(event.cast),
                    "reply_mode": event.reply_mode,
                }
                if event.cast:
                    recast["character"] = event.cast[0].name
                out.append(
                    (
                        update(streams).where(streams.c.room_id == recorded.room_id).values(recast),
                        None,
                    )
                )
            case CharacterCreated():
                # Delete first: a rebuild replays the character's stream over its row.
                out.append((delete(characters).where(characters.c.id == event.id), None))
                out.append((characters.insert(), _character(event, recorded) | {"created_at": at}))
            case CharacterUpdated():
                out.append(
                    (
                        update(characters)
                        .where(characters.c.id == event.id)
                        .values(_character(event, recorded)),
                        None,
                    )
                )
            case CharacterArchived():
                out.append(
                    (
                        update(characters)
                        .where(characters.c.id == event.id)
                        .values(archived=True, revision=v, updated_at=at),
                        None,
                    )
                )
            case MemorySummarized():
                pass  # model context only: read from the log, never a message row
            case RoomRenamed():
                out.append(_room_change(recorded.room_id, {"name": event.name}))
            case RoomLocked():
                out.append(_room_change(recorded.room_id, {"locked": event.locked}))
            case MemberKicked():
                pass  # the bindings (chat.identity) bar the name; no message row changes
            case ReplyChosen():
                _flush(out, table, inserts, changes)
                out.append(_show(table, None, event.message_id))
            case MessageEdited():
                values = {"content": event.content, "edited": True, "last_version": v}
                changes.append(_change(table, event.message_id, values))
            case MessageRedacted():
                values = {"content": "", "audio_url": None, "deleted": True, "last_version": v}
                changes.append(_change(table, event.message_id, values))
            case RoomForked():
                character = event.cast[0].name if event.cast else None
                out.append(
                    (
                        update(streams)
                        .where(streams.c.room_id == recorded.room_id)
                        .values(
                            name=event.name,
                            character=character,
                            cast=encode_cast(event.cast),
                            reply_mode=event.reply_mode,
                            created_at=at,
                        ),
                        None,
                    )
                )
            case MessageImported():
                original = event.original_at or at
                inserts.append(
                    _row(recorded, event.message_id, event.username, event.is_ai, event.content)
                    | {"status": event.status, "created_at": original, "completed_at": original}
                )
            case ReplyChunk():
                pass  # skipped above
            case _:
                assert_never(event)
    _flush(out, table, inserts, changes)
    return out


def _flush(
    out: list[Statement], table: Table, inserts: list[dict[str, Any]], changes: list[Statement]
) -> None:
    """Move the pending inserts, then the pending updates, to ``out`` (and empty both)."""
    if inserts:
        out.append((table.insert(), list(inserts)))
    # Updates go after the inserts of the same batch, in log order, so a reply started and
    # finished within one batch ends up in its final state.
    out += changes
    inserts.clear()
    changes.clear()


def _room_change(room_id: str, values: dict[str, Any]) -> Statement:
    return (update(streams).where(streams.c.room_id == room_id).values(**values), None)


def encode_cast(cast: Sequence[CastMember]) -> str:
    return msgspec.json.encode(list(cast)).decode()


def _character(
    event: CharacterCreated | CharacterUpdated, recorded: RecordedEvent
) -> dict[str, Any]:
    avatar = event.avatar
    return {
        "id": event.id,
        "name": event.name,
        "description": event.description,
        "system_prompt": event.system_prompt,
        "greeting": event.greeting,
        "voice": event.voice,
        "example_dialogue": event.example_dialogue,
        "avatar_digest": avatar.digest if avatar else None,
        "avatar_type": avatar.content_type if avatar else None,
        "revision": recorded.version,
        "archived": False,
        "updated_at": recorded.recorded_at,
    }


def _change(table: Table, message_id: str, values: dict[str, Any]) -> Statement:
    return (
        update(table).where(table.c.id == bindparam("target_id")).values(**values),
        {"target_id": message_id},
    )


def _show(table: Table, slot: str | None, message_id: str | None) -> Statement:
    """Show ``message_id`` in its slot (or, with ``slot``, hide every row of that slot)."""
    where: ColumnElement[Any]
    params: dict[str, str | None]
    if slot is not None:
        where = bindparam("slot_id")
        params = {"slot_id": slot}
        values: dict[str, Any] = {"shown": False}
    else:
        other = table.alias("chosen")
        where = (
            select(func.coalesce(other.c.alternative_of, other.c.id))
            .where(other.c.id == bindparam("chosen_id"))
            .scalar_subquery()
        )
        params = {"chosen_id": message_id}
        values = {"shown": table.c.id == bindparam("chosen_id")}
    # Two indexed lookups (the slot's first reply by id, the others by alternative_of).
    in_slot = or_(table.c.id == where, table.c.alternative_of == where)
    return update(table).where(in_slot).values(**values), params


async def project(
    conn: AsyncConnection, batch: Sequence[RecordedEvent], table: Table = messages
) -> None:
    for statement, params in projection_statements(batch, table):
        await conn.execute(statement, params)


def project_sync(conn: Connection, batch: Sequence[RecordedEvent], table: Table = messages) -> None:
    """``project`` on a synchronous connection (the SQLite writer thread)."""
    for statement, params in projection_statements(batch, table):
        conn.execute(statement, params)


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
        "character_id": None,
        "alternative_of": None,
    }

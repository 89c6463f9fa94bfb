"""What a deletion strips from the log: the words of a message's earlier events.

As Matrix redacts an event, the fact and the time stay (type, ids, versions, status) and the
content goes: ``content``/``text`` emptied, audio links dropped. Summaries written after the
message was posted may repeat its words, so their text is emptied too (the next context
that needs one writes a new summary, from rows that no longer hold the words).

Pure: recorders find the candidate rows (``store.recorders``), this decides what each
becomes, and the recorder rewrites them in the append's own transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from tomchat.domain.codec import decode_event, encode_data
from tomchat.domain.events import (
    Event,
    MemorySummarized,
    MessageEdited,
    MessageImported,
    MessagePosted,
    MessageRedacted,
    RecordedEvent,
    ReplyAudio,
    ReplyChunk,
    ReplyCompleted,
    ReplyStarted,
)

# The types that can carry a message's words (or its audio) under its ``message_id``.
CARRIERS: tuple[str, ...] = (
    "message.posted",
    "reply.started",
    "reply.chunk",
    "reply.audio",
    "reply.completed",
    "message.edited",
    "message.imported",
)
SUMMARY = "memory.summarized"


@dataclass(frozen=True, slots=True)
class Redaction:
    """A ``message.redacted`` just placed in a batch: strip ``message_id`` before ``version``."""

    room_id: str
    message_id: str
    version: int


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event row as it is stored: its key in the table, version, type and data."""

    key: int  # the row's position
    version: int
    type: str
    data: bytes


def redactions(batch: Iterable[RecordedEvent]) -> list[Redaction]:
    return [
        Redaction(r.room_id, r.event.message_id, r.version)
        for r in batch
        if isinstance(r.event, MessageRedacted)
    ]


def marker(message_id: str) -> str:
    """A substring every carrier of ``message_id`` holds in its stored data (a cheap
    ``LIKE`` filter before the rows are decoded and checked)."""
    return '"message_id":' + msgspec.json.encode(message_id).decode()


def stripped(redaction: Redaction, rows: Iterable[StoredEvent]) -> list[tuple[int, bytes]]:
    """The rows (of carriers and summaries before the redaction) whose data must change,
    each with its new data."""
    candidates = sorted(rows, key=lambda r: r.version)
    out: list[tuple[int, bytes]] = []
    posted_at: int | None = None
    for row in candidates:
        if row.version >= redaction.version:
            continue
        event = decode_event(row.type, row.data)
        new: Event | None = None
        match event:
            case MessagePosted() | MessageImported() | ReplyStarted() if (
                event.message_id == redaction.message_id
            ):
                posted_at = row.version if posted_at is None else min(posted_at, row.version)
                if isinstance(event, MessagePosted):
                    new = msgspec.structs.replace(event, content="", audio_url=None)
                elif isinstance(event, MessageImported):
                    new = msgspec.structs.replace(event, content="")
            case ReplyChunk() if event.message_id == redaction.message_id:
                new = msgspec.structs.replace(event, text="")
            case ReplyCompleted() if event.message_id == redaction.message_id:
                new = msgspec.structs.replace(event, content="")
            case ReplyAudio() if event.message_id == redaction.message_id:
                new = msgspec.structs.replace(event, audio_url=None)
            case MessageEdited() if event.message_id == redaction.message_id:
                new = msgspec.structs.replace(event, content="")
            case MemorySummarized() if posted_at is not None and row.version > posted_at:
                new = msgspec.structs.replace(event, summary="")
            case _:
                pass
        if new is not None and new != event:
            out.append((row.key, encode_data(new)))
    return out

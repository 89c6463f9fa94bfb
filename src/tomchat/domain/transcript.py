"""The transcript fold: events in, message rows out.

The same rules drive the SQL projection (``store.projection``); tests check the two agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import assert_never

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
    ReplyMode,
    ReplyStarted,
    RoomCastChanged,
    RoomCreated,
    RoomForked,
    RoomLocked,
    RoomRenamed,
)

STREAMING = "streaming"
POSTED = "complete"


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One user message or one reply, as the ``messages`` table holds it."""

    id: str
    room_id: str
    author: str
    is_ai: bool
    content: str
    status: str
    source: str
    audio_url: str | None
    created_at: datetime
    completed_at: datetime | None
    first_version: int
    last_version: int
    character_id: str | None = None  # a reply's character; None for user messages and old rows
    # The tree (docs/architecture.md, "The tree"): edits, deletions and alternatives.
    edited: bool = False
    deleted: bool = False
    alternative_of: str | None = None  # the first reply of this reply's slot, if regenerated
    shown: bool = True  # the alternative its slot shows (always True outside slots)

    @property
    def slot(self) -> str:
        """The id of the first reply of this message's slot (its own id outside slots)."""
        return self.alternative_of or self.id

    @property
    def visible(self) -> bool:
        """What model contexts, exports and forks use: shown and not deleted."""
        return self.shown and not self.deleted


class Transcript:
    """A room's messages folded from its events, in log order."""

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.name: str | None = None
        self.character: str | None = None
        self.cast: tuple[CastMember, ...] = ()
        self.reply_mode: ReplyMode = "single"
        self.version = 0
        self.locked = False  # no new names may join (room.locked)
        # The room's latest summary of its older turns (model context only, never shown).
        self.memory: MemorySummarized | None = None
        self._rows: dict[str, MessageRow] = {}
        self._chunks: dict[str, list[str]] = {}

    @classmethod
    def fold(cls, room_id: str, events: Iterable[RecordedEvent]) -> Transcript:
        transcript = cls(room_id)
        for recorded in events:
            transcript.apply(recorded)
        return transcript

    def apply(self, recorded: RecordedEvent) -> None:
        event = recorded.event
        at, v = recorded.recorded_at, recorded.version
        self.version = v
        match event:
            case RoomCreated(name=name, character=character):
                self.name, self.character = name, character
                self.cast = event.cast or (CastMember(slug(character), character),)
                self.reply_mode = event.reply_mode
            case RoomCastChanged():
                self.cast, self.reply_mode = event.cast, event.reply_mode
                self.character = event.cast[0].name if event.cast else self.character
            case MessagePosted():
                self._rows[event.message_id] = MessageRow(
                    id=event.message_id,
                    room_id=self.room_id,
                    author=event.username,
                    is_ai=False,
                    content=event.content,
                    status=POSTED,
                    source=event.source,
                    audio_url=event.audio_url,
                    created_at=at,
                    completed_at=at,
                    first_version=v,
                    last_version=v,
                )
            case ReplyStarted():
                if event.alternative_of is not None:
                    self._show(event.alternative_of, None)  # the newest alternative is shown
                self._rows[event.message_id] = MessageRow(
                    id=event.message_id,
                    room_id=self.room_id,
                    author=event.character,
                    is_ai=True,
                    content="",
                    status=STREAMING,
                    source="text",
                    audio_url=None,
                    created_at=at,
                    completed_at=None,
                    first_version=v,
                    last_version=v,
                    character_id=event.character_id,
                    alternative_of=event.alternative_of,
                )
                self._chunks[event.message_id] = []
            case ReplyChunk():
                self._chunks.setdefault(event.message_id, []).append(event.text)
            case ReplyAudio():
                row = self._rows.get(event.message_id)
                if row is not None:
                    self._rows[row.id] = replace(row, audio_url=event.audio_url, last_version=v)
            case ReplyCompleted():
                row = self._rows.get(event.message_id)
                if row is not None:
                    self._rows[row.id] = replace(
                        row,
                        content=event.content,
                        status=event.status,
                        completed_at=at,
                        last_version=v,
                    )
                self._chunks.pop(event.message_id, None)
            case MemorySummarized():
                if self.memory is None or event.through_version >= self.memory.through_version:
                    self.memory = event
            case RoomLocked():
                self.locked = event.locked
            case RoomRenamed():
                self.name = event.name
            case MemberKicked():
                pass  # who may join is the bindings' business (chat.identity), not a row
            case CharacterCreated() | CharacterUpdated() | CharacterArchived():
                pass  # a character's own stream, never a room's
            case ReplyChosen():
                row = self._rows.get(event.message_id)
                if row is not None:
                    self._show(row.slot, row.id)
            case MessageEdited():
                row = self._rows.get(event.message_id)
                if row is not None:
                    self._rows[row.id] = replace(
                        row, content=event.content, edited=True, last_version=v
                    )
            case MessageRedacted():
                row = self._rows.get(event.message_id)
                if row is not None:
                    self._rows[row.id] = replace(
                        row, content="", audio_url=None, deleted=True, last_version=v
                    )
                self._chunks.pop(event.message_id, None)
            case RoomForked(name=name, cast=cast):
                self.name = name
                self.character = cast[0].name if cast else None
            case MessageImported():
                at_first = event.original_at or at
                self._rows[event.message_id] = MessageRow(
                    id=event.message_id,
                    room_id=self.room_id,
                    author=event.username,
                    is_ai=event.is_ai,
                    content=event.content,
                    status=event.status,
                    source="text",
                    audio_url=None,
                    created_at=at_first,
                    completed_at=at_first,
                    first_version=v,
                    last_version=v,
                )
            case _:
                assert_never(event)

    def _show(self, slot: str, message_id: str | None) -> None:
        """Show ``message_id`` in ``slot`` and hide the slot's other alternatives."""
        for row in list(self._rows.values()):
            if row.slot == slot and row.shown != (row.id == message_id):
                self._rows[row.id] = replace(row, shown=row.id == message_id)

    @property
    def rows(self) -> list[MessageRow]:
        return sorted(self._rows.values(), key=lambda r: r.first_version)

    def streaming_text(self, message_id: str) -> str:
        """The text so far of a reply still streaming (rebuilt from its chunks)."""
        return "".join(self._chunks.get(message_id, ()))

    @property
    def streaming(self) -> list[MessageRow]:
        return [r for r in self.rows if r.status == STREAMING]

"""The character library: each character is a stream of its own in the event store
(``character:<id>``: ``character.created``, ``character.updated``, ``character.archived``)
with the ``characters`` projection for listing, and its pictures kept by digest.

A character's revision is its stream's version, so a room's cast (``[{id, name, revision}]``)
names exactly the state it uses: :meth:`CharacterLibrary.at_revision` reads that state back
from the log whatever the library holds now.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tomchat.domain.character import Character, is_character_stream, stream_id
from tomchat.domain.events import (
    Avatar,
    CharacterArchived,
    CharacterCreated,
    CharacterUpdated,
)
from tomchat.store.event_store import AppendConflict, ConcurrencyError, EventStore
from tomchat.store.reads import read_events
from tomchat.store.schema import character_avatars, characters

StateEvent = TypeVar("StateEvent", CharacterCreated, CharacterUpdated)


@dataclass(frozen=True, slots=True)
class CharacterRecord:
    """A character as the library lists it now."""

    character: Character  # with id and revision set
    avatar: Avatar | None
    archived: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Picture:
    content_type: str
    data: bytes


class CharacterExists(AppendConflict):
    def __init__(self, character_id: str) -> None:
        super().__init__(f"a character with id {character_id!r} exists already")


class CharacterLibrary:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.db = store.db
        # A revision never changes: what the rooms' replies read is kept.
        self._revisions: dict[tuple[str, int], Character | None] = {}

    # -- reading ---------------------------------------------------------------------------

    async def list(self, *, archived: bool = False) -> list[CharacterRecord]:
        """Every character, by name: one indexed read of the projection."""
        query = select(characters).order_by(characters.c.name, characters.c.id)
        if not archived:
            query = query.where(characters.c.archived.is_(False))
        async with self.db.snapshot() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def get(self, character_id: str) -> CharacterRecord | None:
        query = select(characters).where(characters.c.id == character_id)
        async with self.db.snapshot() as conn:
            row = (await conn.execute(query)).first()
        return _record(row) if row is not None else None

    async def at_revision(self, character_id: str, revision: int) -> Character | None:
        """The character as it was at ``revision`` (its latest state up to that version)."""
        key = (character_id, revision)
        if key in self._revisions:
            return self._revisions[key]
        async with self.db.snapshot() as conn:
            found = await read_events(conn, stream_id(character_id), 0, upto=revision)
        state: Character | None = None
        for recorded in found:
            event = recorded.event
            if isinstance(event, CharacterCreated | CharacterUpdated):
                state = _character(event, recorded.version)
        if found and found[-1].version == revision:
            self._revisions[key] = state
        return state

    async def avatar_at(self, character_id: str, revision: int | None) -> Avatar | None:
        """The picture of the character at ``revision`` (now, when None)."""
        if revision is None:
            record = await self.get(character_id)
            return record.avatar if record is not None else None
        async with self.db.snapshot() as conn:
            found = await read_events(conn, stream_id(character_id), 0, upto=revision)
        avatar: Avatar | None = None
        for recorded in found:
            if isinstance(recorded.event, CharacterCreated | CharacterUpdated):
                avatar = recorded.event.avatar
        return avatar

    async def picture(self, digest: str) -> Picture | None:
        query = select(character_avatars).where(character_avatars.c.digest == digest)
        async with self.db.snapshot() as conn:
            row = (await conn.execute(query)).first()
        return Picture(row.content_type, row.data) if row is not None else None

    # -- writing ---------------------------------------------------------------------------

    async def create(self, character: Character, picture: Picture | None = None) -> CharacterRecord:
        """Add a character under ``character.key``; CharacterExists if that id is taken."""
        character_id = character.key
        avatar = await self._keep(picture) if picture is not None else None
        event = _state(CharacterCreated, character_id, character, avatar)
        try:
            await self.store.append(stream_id(character_id), [event], expected_version=0)
        except ConcurrencyError:
            raise CharacterExists(character_id) from None
        record = await self.get(character_id)
        assert record is not None
        return record

    async def update(
        self,
        character_id: str,
        character: Character,
        picture: Picture | None = None,
        *,
        keep_avatar: bool = True,
    ) -> CharacterRecord | None:
        """Replace the character's state (its picture too when given); None if unknown."""
        current = await self.get(character_id)
        if current is None:
            return None
        avatar = await self._keep(picture) if picture is not None else None
        if avatar is None and keep_avatar:
            avatar = current.avatar
        event = _state(CharacterUpdated, character_id, character, avatar)
        await self.store.append(stream_id(character_id), [event])
        return await self.get(character_id)

    async def archive(self, character_id: str) -> bool:
        current = await self.get(character_id)
        if current is None:
            return False
        if not current.archived:
            await self.store.append(stream_id(character_id), [CharacterArchived(id=character_id)])
        return True

    async def ensure(self, character: Character) -> Character:
        """The library's state of a configured character (``TOMCHAT_CHARACTER``, the demo's):
        created when missing, brought back to the configured card when it differs."""
        record = await self.get(character.key)
        if record is None:
            try:
                record = await self.create(character)
            except CharacterExists:  # another process made it meanwhile
                record = await self.get(character.key)
                assert record is not None
        elif _differs(record.character, character) or record.archived:
            updated = await self.update(character.key, character)
            assert updated is not None
            record = updated
        return record.character

    async def _keep(self, picture: Picture) -> Avatar:
        digest = hashlib.sha256(picture.data).hexdigest()
        try:
            async with self.db.writer.begin() as conn:
                exists = (
                    await conn.execute(
                        select(character_avatars.c.digest).where(
                            character_avatars.c.digest == digest
                        )
                    )
                ).first()
                if exists is None:
                    await conn.execute(
                        character_avatars.insert().values(
                            digest=digest,
                            content_type=picture.content_type,
                            data=picture.data,
                            created_at=datetime.now(UTC),
                        )
                    )
        except IntegrityError:
            pass  # the same picture, kept by another request at the same moment
        return Avatar(digest=digest, content_type=picture.content_type, size=len(picture.data))


def _differs(kept: Character, configured: Character) -> bool:
    fields = ("name", "system_prompt", "greeting", "voice", "example_dialogue", "description")
    return any(getattr(kept, f) != getattr(configured, f) for f in fields)


def _character(event: CharacterCreated | CharacterUpdated, revision: int) -> Character:
    return Character(
        id=event.id,
        name=event.name,
        system_prompt=event.system_prompt,
        greeting=event.greeting,
        voice=event.voice,
        example_dialogue=event.example_dialogue,
        description=event.description,
        revision=revision,
    )


def _record(r: Any) -> CharacterRecord:
    """A row of ``characters``."""
    avatar = (
        Avatar(digest=r.avatar_digest, content_type=r.avatar_type, size=0)
        if r.avatar_digest
        else None
    )
    return CharacterRecord(
        character=Character(
            id=r.id,
            name=r.name,
            system_prompt=r.system_prompt,
            greeting=r.greeting,
            voice=r.voice,
            example_dialogue=r.example_dialogue,
            description=r.description,
            revision=r.revision,
        ),
        avatar=avatar,
        archived=r.archived,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


__all__ = [
    "CharacterExists",
    "CharacterLibrary",
    "CharacterRecord",
    "Picture",
    "is_character_stream",
]


def _state(
    kind: type[StateEvent], character_id: str, character: Character, avatar: Avatar | None
) -> StateEvent:
    """``character.created`` or ``character.updated``: the character's whole state."""
    return kind(
        id=character_id,
        name=character.name,
        system_prompt=character.system_prompt,
        greeting=character.greeting,
        description=character.description,
        voice=character.voice,
        example_dialogue=character.example_dialogue,
        avatar=avatar,
    )

"""The log as a tree: regenerate and choose alternatives, edit, delete for real, fork.

Every command checks what it may do against one snapshot of the room and appends with that
snapshot's version as ``expected_version`` (the reply loop does so for a regeneration), so
no command acts on a state that no longer holds: when the room moved on meanwhile it is
checked again, and of two regenerations racing one wins and the other is told (``busy`` or
``conflict``). Every refusal raises ``PayloadError`` with its code and appends
nothing. See docs/architecture.md, "The tree".
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tomchat.chat.access import RoomAccess
from tomchat.chat.conversation import AlternativeRefused, Conversation, Regeneration
from tomchat.domain.events import (
    CastMember,
    Event,
    MessageEdited,
    MessageImported,
    MessageRedacted,
    RecordedEvent,
    ReplyChosen,
    ReplyStarted,
    RoomForked,
    new_message_id,
)
from tomchat.domain.redaction import marker
from tomchat.domain.transcript import STREAMING, MessageRow, Transcript
from tomchat.media.files import MediaStore
from tomchat.store.event_store import ConcurrencyError, EventStore
from tomchat.store.reads import head_of, read_events
from tomchat.store.rooms import RoomReader, _message
from tomchat.store.schema import events, messages
from tomchat.store.transcripts import TranscriptReader
from tomchat.wire.incoming import PayloadError

log = logging.getLogger(__name__)


ATTEMPTS = 5  # checks of a command against a room that keeps moving, before giving up


def _raced() -> PayloadError:
    return PayloadError("conflict", "the room changed meanwhile: look again and retry")


@dataclass(frozen=True, slots=True)
class Forked:
    room_id: str
    token: str | None  # a private fork's invite token, shown once
    imported: int


class Tree:
    def __init__(
        self,
        store: EventStore,
        reader: RoomReader,
        conversation: Conversation,
        media: MediaStore,
        access: RoomAccess,
    ) -> None:
        self.store = store
        self.reader = reader
        self.conversation = conversation
        self.media = media
        self.access = access

    # -- regenerate and choose -------------------------------------------------------------

    async def regenerate(self, room_id: str, message_id: str) -> RecordedEvent:
        """Start a new alternative of the room's latest reply; its ``reply.started``.

        When the room changed between the check and the start (its voice arriving late, a
        rival regeneration), it is checked again: a rival's reply now streams, so the
        loser is told ``busy``; something unrelated lets it go ahead."""
        latest: list[str] = []  # the room's latest reply at the first check
        for _ in range(ATTEMPTS):
            try:
                return await self._regenerate(room_id, message_id, latest)
            except AlternativeRefused as exc:
                if exc.code != "conflict":
                    raise PayloadError(exc.code, str(exc)) from None
        raise _raced()

    async def _regenerate(self, room_id: str, message_id: str, seen: list[str]) -> RecordedEvent:
        async with self.reader.db.snapshot() as conn:
            head = await head_of(conn, room_id) or 0
            row = await _row(conn, room_id, message_id)
            if row is None or not row.is_ai:
                raise PayloadError("not_found", f"no reply {message_id!r} in this room")
            await _nothing_streams(conn, room_id)
            latest = await _latest_reply(conn, room_id)
            if latest is None or latest.slot != row.slot:
                raise PayloadError("not_latest", "only the room's latest reply can be regenerated")
            if seen and seen[0] != latest.id:
                raise PayloadError("conflict", "another regenerate of this reply came first")
            seen[:] = [latest.id]
            if await _waiting(conn, room_id, latest.first_version):
                raise PayloadError(
                    "not_latest", "messages are waiting for an answer: the next reply is coming"
                )
            # The new alternative answers what the slot's first reply answered.
            first = row if row.alternative_of is None else await _row(conn, room_id, row.slot)
            v = first.first_version if first is not None else 0
            started = [e.event for e in await read_events(conn, room_id, v - 1, upto=v)]
        in_reply_to = next((e.in_reply_to for e in started if isinstance(e, ReplyStarted)), ())
        slot = row.slot
        request = Regeneration(slot, in_reply_to, head, asyncio.get_running_loop().create_future())
        return await self.conversation.regenerate(room_id, request)

    async def choose(self, room_id: str, message_id: str) -> RecordedEvent:
        """Show ``message_id`` in its slot, to everyone (``reply.chosen``)."""

        async def check() -> tuple[int, Event]:
            async with self.reader.db.snapshot() as conn:
                head = await head_of(conn, room_id) or 0
                row = await _row(conn, room_id, message_id)
                if row is None or not row.is_ai:
                    raise PayloadError("not_found", f"no reply {message_id!r} in this room")
                if row.alternative_of is None and not await _has_alternatives(conn, row.id):
                    raise PayloadError("not_found", "this reply has no alternatives to choose")
            return head, ReplyChosen(message_id=message_id)

        return await self._append(room_id, check)

    # -- edit and delete -------------------------------------------------------------------

    async def edit(
        self, room_id: str, message_id: str, username: str, content: str
    ) -> RecordedEvent:
        async def check() -> tuple[int, Event]:
            head, row = await self._message(room_id, message_id)
            if row.is_ai or row.author != username:
                raise PayloadError("forbidden", "only its author can edit a message")
            return head, MessageEdited(message_id=message_id, content=content)

        return await self._append(room_id, check)

    async def delete(
        self,
        room_id: str,
        message_id: str,
        by: str,
        *,
        as_host: bool,
        reason: str | None = None,
    ) -> RecordedEvent:
        """Delete a message for real: the words leave every event of the log (in the same
        transaction as ``message.redacted``), then its audio file leaves the disk."""
        audio: list[str | None] = []

        async def check() -> tuple[int, Event]:
            head, row = await self._message(room_id, message_id)
            own = not row.is_ai and row.author == by
            if not (own or as_host):
                raise PayloadError("forbidden", "only its author or the room's host can delete it")
            if row.status == STREAMING:
                raise PayloadError("busy", "this reply is still being written: stop it first")
            audio[:] = [row.audio_url]
            return head, MessageRedacted(message_id=message_id, by=by, reason=reason)

        recorded = await self._append(room_id, check)
        url = audio[0] if audio else None
        if url and (name := self.media.name_of(url)) is not None:
            try:
                self.media.delete(name)
            except OSError as exc:
                log.warning("could not delete the audio of deleted message %s: %s", message_id, exc)
        return recorded

    async def _message(self, room_id: str, message_id: str) -> tuple[int, MessageRow]:
        """The room's head and the message (not deleted), read in one snapshot."""
        async with self.reader.db.snapshot() as conn:
            head = await head_of(conn, room_id) or 0
            row = await _row(conn, room_id, message_id)
        if row is None or row.deleted:
            raise PayloadError("not_found", f"no message {message_id!r} in this room")
        return head, row

    async def _append(
        self, room_id: str, check: Callable[[], Awaitable[tuple[int, Event]]]
    ) -> RecordedEvent:
        """Append what ``check`` decides, at the version it read: if the room moved on
        meanwhile (a reply's voice, someone's message), check again on the new state."""
        for _ in range(ATTEMPTS):
            head, event = await check()
            try:
                [recorded] = await self.store.append(room_id, [event], expected_version=head)
            except ConcurrencyError:
                continue
            return recorded
        raise _raced()

    # -- fork ------------------------------------------------------------------------------

    async def fork(
        self,
        room_id: str,
        at: int | None,
        new_id: str,
        name: str | None,
        *,
        private: bool = False,
    ) -> Forked | None:
        """A new room holding the source's visible transcript at version ``at``: None if the
        source does not exist, PayloadError if ``at`` is past its head; Forked.room_id is
        None-free, and a taken ``new_id`` raises ``conflict``."""
        source = await self.reader.room(room_id)
        if source is None:
            return None
        at = source.version if at is None else at
        if at > source.version:
            raise PayloadError("bad_request", f"the room is at version {source.version}, not {at}")
        transcript = Transcript(room_id)
        async for page in TranscriptReader(self.reader.db).event_pages(room_id, 0, upto=at):
            for recorded in page:
                transcript.apply(recorded)
        deleted_since = await self._deleted(room_id)
        title = name or f"{transcript.name or room_id} (fork)"
        character = transcript.character or self.conversation.character.name
        events: list[Event] = [
            RoomForked(
                from_room=room_id,
                at_version=at,
                name=title,
                # The source's cast at the revisions it uses, so the fork talks the same.
                cast=source.cast or (CastMember(id=_slug(character), name=character, revision=1),),
                reply_mode=source.reply_mode,
            )
        ]
        for row in _visible(transcript.rows, deleted_since):
            streaming = row.status == STREAMING
            events.append(
                MessageImported(
                    message_id=new_message_id(),
                    username=row.author,
                    is_ai=row.is_ai,
                    content=transcript.streaming_text(row.id) if streaming else row.content,
                    status="interrupted" if streaming else row.status,  # type: ignore[arg-type]
                    original_at=row.created_at,
                    character_id=(row.character_id or _slug(row.author)) if row.is_ai else None,
                )
            )

        async def create() -> bool:
            try:
                await self.store.append(new_id, events, expected_version=0)
            except ConcurrencyError:
                return False
            return True

        token: str | None = None
        if private:
            token = await self.access.create_private_room(
                self.conversation, new_id, title, create=create
            )
            created = token is not None
        else:
            created = await create()
        if not created:
            raise PayloadError("conflict", f"room {new_id!r} exists already")
        return Forked(new_id, token, len(events) - 1)

    async def version_of(self, room_id: str, message_id: str) -> int | None:
        """The version at which a message was whole: a reply's completion, a message's
        posting; None if the room has no such message."""
        async with self.reader.db.snapshot() as conn:
            row = await _row(conn, room_id, message_id)
            if row is None:
                return None
            if not row.is_ai:
                return row.first_version
            query = select(func.min(events.c.version)).where(
                events.c.room_id == room_id,
                events.c.version >= row.first_version,
                events.c.type == "reply.completed",
                events.c.data.contains(marker(message_id), autoescape=True),
            )
            done: int | None = (await conn.execute(query)).scalar_one()
        # A reply still streaming (or imported whole into a fork) is as it began.
        return done or row.first_version

    async def _deleted(self, room_id: str) -> set[str]:
        query = select(messages.c.id).where(
            messages.c.room_id == room_id, messages.c.deleted.is_(True)
        )
        async with self.reader.db.snapshot() as conn:
            return set((await conn.execute(query)).scalars())


def _visible(rows: Sequence[MessageRow], deleted: set[str]) -> list[MessageRow]:
    """What a fork copies: the chosen alternatives, nothing deleted (then or since)."""
    return [r for r in rows if r.visible and r.id not in deleted]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64] or "character"


async def _row(conn: AsyncConnection, room_id: str, message_id: str) -> MessageRow | None:
    found = (await conn.execute(select(messages).where(messages.c.id == message_id))).first()
    if found is None or found.room_id != room_id:
        return None
    return _message(found)


async def _latest_reply(conn: AsyncConnection, room_id: str) -> MessageRow | None:
    query = (
        select(messages)
        .where(messages.c.room_id == room_id, messages.c.is_ai.is_(True))
        .order_by(messages.c.first_version.desc())
        .limit(1)
    )
    found = (await conn.execute(query)).first()
    return _message(found) if found is not None else None


async def _nothing_streams(conn: AsyncConnection, room_id: str) -> None:
    query = select(func.count()).where(
        messages.c.room_id == room_id, messages.c.status == STREAMING
    )
    if (await conn.execute(query)).scalar_one():
        raise PayloadError("busy", "a reply is being written in this room: wait for its end")


async def _waiting(conn: AsyncConnection, room_id: str, after: int) -> bool:
    query = select(func.count()).where(
        messages.c.room_id == room_id,
        messages.c.is_ai.is_(False),
        messages.c.first_version > after,
    )
    return bool((await conn.execute(query)).scalar_one())


async def _has_alternatives(conn: AsyncConnection, message_id: str) -> bool:
    query = select(func.count()).where(messages.c.alternative_of == message_id)
    return bool((await conn.execute(query)).scalar_one())

"""The conversation: rooms, user messages, and the character's streamed replies.

One reply streams per room at a time. The queue of user messages waiting for an answer is
the log itself (user messages posted after the last reply started), so whatever arrives
while Tom is talking is answered together by the next reply.

This module holds the commands and each room's reply loop; one reply's run (model, chunks,
voice) is ``chat.reply_run``, and the cross-process room leases the loop holds while it
answers (renewal, watchdog, recovery) are ``chat.leasing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tomchat import logs, metrics
from tomchat.ai.protocols import ChatModel
from tomchat.chat.leasing import RoomLeasing, close_orphans
from tomchat.chat.memory import RoomMemory
from tomchat.chat.reply_run import Replier, ReplyRun
from tomchat.chat.voice import Voice
from tomchat.cluster.bus import Bus, LocalBus, ProcessIdentity, Signal
from tomchat.domain.character import Character
from tomchat.domain.errors import TomchatError
from tomchat.domain.events import (
    CastMember,
    Event,
    MessagePosted,
    MessageSource,
    NewEvent,
    RecordedEvent,
    ReplyCompleted,
    ReplyMode,
    ReplyStarted,
    RoomCastChanged,
    RoomCreated,
    new_message_id,
)
from tomchat.domain.transcript import STREAMING, MessageRow
from tomchat.domain.turns import Turn, next_turn
from tomchat.store.characters import CharacterLibrary
from tomchat.store.event_store import AppendConflict, ConcurrencyError, EventStore, LeaseLost
from tomchat.store.leases import ReplyLeases
from tomchat.store.rooms import RoomReader
from tomchat.wire.incoming import PayloadError

log = logging.getLogger(__name__)


class AlternativeRefused(TomchatError):
    """A regeneration the reply loop could not start (``chat.tree`` says why to the client)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(eq=False)
class Regeneration:
    """A new alternative asked of the room's reply loop: a reply to the same messages as the
    slot's first reply, started only if the room is still at ``expected_version``."""

    slot: str  # the first reply of the slot
    in_reply_to: tuple[str, ...]
    expected_version: int
    started: asyncio.Future[RecordedEvent]


_CLIENT_ID_NAMESPACE = uuid.UUID("6f1c2a52-4c8e-4a55-9d0e-7a0f1b6c3e11")
MAX_CAST = 8
# Messages read to decide who answers next: back past the waiting messages (at most
# ``LiveLimits.waiting_messages``) and the replies since, to the last speaker.
TURN_HISTORY = 60


class CastError(PayloadError):
    """A cast that cannot be: empty, too big, repeated, or naming unknown characters."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_request", message)


def member(character: Character) -> CastMember:
    return CastMember(character.key, character.name, max(character.revision, 1))


class Conversation:
    def __init__(
        self,
        store: EventStore,
        reader: RoomReader,
        model: ChatModel,
        character: Character,
        voice: Voice | None = None,
        *,
        leases: ReplyLeases | None = None,
        bus: Bus | None = None,
        memory: RoomMemory | None = None,
        library: CharacterLibrary | None = None,
        greeting_note: str = "",
    ) -> None:
        self.memory = memory or RoomMemory(store, reader, model)
        self.store = store
        self.reader = reader
        self.model = model
        self.character = character
        # The cast of a room created without one (``set_default_cast``; the demo has two).
        self.default_cast: tuple[Character, ...] = (character,)
        self.library = library or CharacterLibrary(store)
        self.greeting_note = greeting_note  # after every greeting (the demo says it is one)
        self._characters: dict[tuple[str, int], Character] = {}
        self.voice = voice
        self.leases = leases or ReplyLeases(store.db, ProcessIdentity.current())
        self.bus = bus or LocalBus()
        self.bus.subscribe(self._on_signal)
        self.leasing = RoomLeasing(self.leases, self, reader.unattended)
        self.replier = Replier(
            model,
            character,
            self._append,
            reader,
            voice,
            self.memory,
            logged=reader,
            append_at=self._append_at,
        )
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._wanted: set[str] = set()
        self._replies: dict[str, ReplyRun] = {}
        self._regenerations: dict[str, Regeneration] = {}  # at most one waiting per room
        self._background: set[asyncio.Task[Any]] = set()  # signals being sent
        self._closing = False

    # -- rooms -----------------------------------------------------------------------------

    def set_default_cast(self, cast: Sequence[Character]) -> None:
        """The library's state of the configured characters, the first being the default."""
        self.default_cast = tuple(cast) or (self.character,)
        self.character = self.default_cast[0]

    async def resolve_cast(self, ids: Sequence[str]) -> tuple[CastMember, ...]:
        """Library ids to a cast at the characters' current revisions; CastError if not."""
        if not 1 <= len(ids) <= MAX_CAST:
            raise CastError(f"a cast has 1 to {MAX_CAST} characters, not {len(ids)}")
        if len(set(ids)) != len(ids):
            raise CastError("a character can be in a cast only once")
        cast = []
        for character_id in ids:
            record = await self.library.get(character_id)
            if record is None or record.archived:
                raise CastError(f"no character {character_id!r} in the library")
            cast.append(member(record.character))
        names = [m.name.casefold() for m in cast]
        if len(set(names)) != len(names):
            raise CastError("two characters of a cast cannot have the same name")
        return tuple(cast)

    async def ensure_room(
        self,
        room_id: str,
        name: str | None = None,
        *,
        cast: Sequence[CastMember] | None = None,
        reply_mode: ReplyMode = "single",
    ) -> bool:
        """Create the room (with its first character's greeting) unless it exists; True if
        created. Without a cast, the default one."""
        if await self.store.head(room_id):
            return False
        members = tuple(cast) if cast else tuple(member(c) for c in self.default_cast)
        greeter = await self.character_of(members[0])
        greeting_id = new_message_id()
        try:
            await self.store.append(
                room_id,
                [
                    RoomCreated(
                        name=name or room_id,
                        character=members[0].name,
                        cast=members,
                        reply_mode=reply_mode,
                    ),
                    ReplyStarted(
                        message_id=greeting_id,
                        character=greeter.name,
                        character_id=members[0].id,
                    ),
                    ReplyCompleted(
                        message_id=greeting_id,
                        content=greeter.greeting + self.greeting_note,
                        status="complete",
                    ),
                ],
                expected_version=0,
            )
        except ConcurrencyError:
            return False  # someone else created it first: same outcome
        return True

    async def set_cast(
        self,
        room_id: str,
        ids: Sequence[str],
        reply_mode: ReplyMode | None = None,
        *,
        by: str | None = None,
    ) -> RecordedEvent:
        """Change the room's cast (and reply mode, when given) as ``by``."""
        info = await self.reader.room(room_id)
        if info is None:
            raise PayloadError("not_found", f"no room {room_id!r}")
        cast = await self.resolve_cast(ids)
        event = RoomCastChanged(cast=cast, reply_mode=reply_mode or info.reply_mode, by=by)
        [recorded] = await self.store.append(room_id, [event])
        self.kick(room_id)  # a new member named in waiting messages may owe an answer
        return recorded

    async def character_of(self, cast_member: CastMember) -> Character:
        """The character of a cast member, at the revision the room uses."""
        key = (cast_member.id, cast_member.revision)
        found = self._characters.get(key)
        if found is not None:
            return found
        character = await self.library.at_revision(cast_member.id, cast_member.revision)
        if character is None:
            # Not in this library (a room from another server's card): the configured
            # character, under the name the room knows.
            for configured in self.default_cast:
                if configured.key == cast_member.id:
                    character = configured
                    break
            else:
                character = replace(self.character, id=cast_member.id, name=cast_member.name)
        self._characters[key] = character
        return character

    async def next_turn(self, room_id: str) -> tuple[Turn, list[MessageRow], int] | None:
        """Who answers next in the room, the messages it answers (see ``domain.turns``) and
        the room's version they were read at: the reply starts only if the room is still
        there, so its in_reply_to names exactly what its context holds."""
        info = await self.reader.room(room_id)
        if info is None:
            return None
        cast = info.cast or tuple(member(c) for c in self.default_cast)
        version, rows = await self.reader.recent_at(room_id, TURN_HISTORY)
        turn = next_turn(cast, info.reply_mode, rows)
        if turn is None:
            return None
        return turn, [r for r in rows if r.id in turn.in_reply_to], version

    # -- user messages ---------------------------------------------------------------------

    async def post_message(
        self,
        room_id: str,
        username: str,
        content: str,
        *,
        client_id: str | None = None,
        source: MessageSource = "text",
        audio_url: str | None = None,
    ) -> RecordedEvent:
        """Append a user message and make sure it gets answered.

        The same ``client_id`` from the same user maps to the same event id, so a client's
        retry returns the first answer and appends nothing.
        """
        event_id = (
            uuid.uuid5(_CLIENT_ID_NAMESPACE, f"{room_id}\x00{username}\x00{client_id}")
            if client_id
            else uuid.uuid4()
        )
        event = MessagePosted(
            message_id=new_message_id(),
            username=username,
            content=content,
            source=source,
            audio_url=audio_url,
            client_id=client_id,
        )
        [recorded] = await self.store.append(room_id, [NewEvent(event, event_id)])
        self.kick(room_id)
        return recorded

    # -- replies ---------------------------------------------------------------------------

    async def regenerate(self, room_id: str, request: Regeneration) -> RecordedEvent:
        """Have the room's reply loop start a new alternative; its ``reply.started``.

        The loop starts it under the room's lease with ``expected_version``, so of two
        regenerations racing (here or in another process) one is started and the other is
        refused; a loop busy with another reply, or a room held by another process, refuses.
        """
        if room_id in self._regenerations or room_id in self._replies or self._closing:
            raise AlternativeRefused("busy", "a reply is being written in this room")
        self._regenerations[room_id] = request
        self.kick(room_id)
        return await request.started

    def kick(self, room_id: str) -> None:
        """Make sure the room's reply loop will look at its queue again."""
        if self._closing:
            # This process starts no more replies: another one must answer.
            self._spawn(self.bus.publish(Signal("kick", room_id)))
            return
        self._wanted.add(room_id)
        if room_id not in self._loops:
            task = asyncio.create_task(self._reply_loop(room_id), name=f"replies:{room_id}")
            self._loops[room_id] = task

    async def stop(self, room_id: str, message_id: str, by: str | None = None) -> bool:
        """Stop a reply in flight, here or in another process; True if the reply is this
        room's (streaming or already finished). ``by`` (a username) is kept on the
        ``reply.completed`` of the stopped reply."""
        if self.stop_here(room_id, message_id, by):
            return True
        row = await self.reader.message(message_id)
        if row is None or row.room_id != room_id or not row.is_ai:
            return False
        if row.status == STREAMING:
            # Another process writes it. The request on the lease row reaches the writer at
            # its next renewal whatever happens; the signal is the prompt way.
            await self.leases.request_stop(room_id, message_id)
            await self.bus.publish(Signal("stop", room_id, message_id, by=by))
        return True

    def stop_here(self, room_id: str, message_id: str, by: str | None = None) -> bool:
        """Stop reply ``message_id`` if this process writes it; True if it does."""
        reply = self._replies.get(room_id)
        if reply is None or reply.message_id != message_id:
            return False
        reply.stop(by)
        return True

    def streaming_in(self, room_id: str) -> str | None:
        reply = self._replies.get(room_id)
        return reply.message_id if reply else None

    def serving(self, room_id: str) -> bool:
        """True while this process runs the room's reply loop."""
        return room_id in self._loops

    def lease_lost(self, room_id: str) -> None:
        """Another process took the room: its reply here writes nothing more."""
        reply = self._replies.get(room_id)
        if reply is not None:
            reply.lose_lease()

    async def _reply_loop(self, room_id: str) -> None:
        try:
            while room_id in self._wanted and not self._closing:
                self._wanted.discard(room_id)
                if not await self.leasing.hold(room_id):
                    # A live process holds the room. It reads the queue again after letting
                    # go, and what we were kicked for was committed before we asked.
                    continue
                try:
                    await self._serve(room_id)
                finally:
                    await self.leasing.let_go(room_id)
                # A message another process saw us holding the room for may have come after
                # our last look: look once more now that the room is free.
                if not self._closing and await self.next_turn(room_id) is not None:
                    self._wanted.add(room_id)
        except LeaseLost:
            log.warning("room %s was taken over by another process", room_id)
        except Exception:
            log.exception("reply loop of room %s failed", room_id)
        finally:
            # Removal happens in the same step as the last check, so a kick is never lost.
            self._loops.pop(room_id, None)
            waiting = self._regenerations.pop(room_id, None)
            if waiting is not None and not waiting.started.done():
                # The room was held by another process (which is writing a reply).
                waiting.started.set_exception(
                    AlternativeRefused("busy", "a reply is being written in this room")
                )

    async def _serve(self, room_id: str) -> None:
        """Holding the room: close what a dead holder left, then answer until nobody waits."""
        await close_orphans(room_id, await self.reader.streaming_replies_in(room_id), self._append)
        if (waiting := self._regenerations.get(room_id)) is not None:
            # Left registered until it has started or failed: a rival meanwhile is busy.
            await self._alternative(room_id, waiting)
        while not self._closing:
            found = await self.next_turn(room_id)
            if found is None:
                return
            turn, pending, version = found
            await self._reply(room_id, pending, await self.character_of(turn.member), version)

    async def _append(self, room_id: str, events: Sequence[Event]) -> None:
        """Append as the holder of the room's lease: refused once it has passed on."""
        await self.store.append(room_id, events, lease_owner=self.leases.owner)

    async def _append_at(self, room_id: str, events: Sequence[Event], version: int) -> None:
        """Append as the lease holder, only while the room is still at ``version``."""
        await self.store.append(
            room_id, events, expected_version=version, lease_owner=self.leases.owner
        )

    async def _reply(
        self, room_id: str, pending: Sequence[MessageRow], character: Character, version: int
    ) -> None:
        reply = self.replier.reply(room_id, character=character)
        logs.bind(room_id=room_id, message_id=reply.message_id)  # JSON log lines name them
        try:
            await reply.start(pending, version=version)
        except ConcurrencyError:
            return  # a message came in since the queue was read: the caller reads it again
        # Stoppable from the moment its reply.started is committed.
        self._replies[room_id] = reply
        try:
            with metrics.ROOMS_STREAMING.track_inprogress():  # /metrics: rooms streaming now
                await reply.stream()
        finally:
            self._replies.pop(room_id, None)

    async def _alternative(self, room_id: str, request: Regeneration) -> None:
        """Start the regeneration waiting for the room, then stream it like any reply."""
        reply = self.replier.reply(room_id)
        started = ReplyStarted(
            message_id=reply.message_id,
            character=self.character.name,
            in_reply_to=request.in_reply_to,
            alternative_of=request.slot,
        )
        refused: BaseException | None = None
        try:
            [recorded] = await self.store.append(
                room_id,
                [started],
                expected_version=request.expected_version,
                lease_owner=self.leases.owner,
            )
        except ConcurrencyError:
            refused = AlternativeRefused("conflict", "the room changed meanwhile: look again")
        except AppendConflict as exc:
            refused = AlternativeRefused("conflict", str(exc))
        except asyncio.CancelledError:
            self._regenerations.pop(room_id, None)
            request.started.cancel()
            raise
        except Exception as exc:
            refused = exc
        else:
            # Registered as the room's reply before the request is let go: a rival
            # regeneration sees the room busy at every moment.
            self._replies[room_id] = reply
        self._regenerations.pop(room_id, None)
        if refused is not None:
            request.started.set_exception(refused)
            return
        request.started.set_result(recorded)
        logs.bind(room_id=room_id, message_id=reply.message_id)
        try:
            with metrics.ROOMS_STREAMING.track_inprogress():
                await reply.stream()
        finally:
            self._replies.pop(room_id, None)

    # -- other processes -------------------------------------------------------------------

    async def _on_signal(self, signal: Signal) -> None:
        if signal.kind == "kick":
            if not self._closing:
                self.kick(signal.room_id)
        elif signal.kind == "stop" and signal.message_id is not None:
            self.stop_here(signal.room_id, signal.message_id, signal.by)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- start-up and shut-down ------------------------------------------------------------

    async def recover(self) -> int:
        """Hand the rooms that stopped processes left mid-reply or with messages waiting to
        the reply loop, which closes those replies as ``interrupted`` (text kept) and answers
        what still waits; returns the number of rooms handed over (see ``RoomLeasing.recover``)."""
        return await self.leasing.recover(self.reader.rooms_with_streaming_replies)

    def start(self) -> None:
        """Start renewing held leases and watching for rooms whose holder died."""
        self.leasing.start()

    async def close(self) -> None:
        """Stop taking work; replies in flight end as ``interrupted`` with their text kept,
        and whatever still waits is left to another process."""
        self._closing = True
        await self.memory.aclose()
        for reply in list(self._replies.values()):
            reply.interrupt()
        rooms = list(self._loops)
        loops = list(self._loops.values())
        if loops:
            await asyncio.wait(loops, timeout=10)
        for room_id in rooms:
            self.kick(room_id)  # while closing, a kick goes to the other processes
        await self.leasing.close()
        # Signals still being sent get a moment, then everything left is cancelled.
        background = list(self._background)
        if background:
            await asyncio.wait(background, timeout=2)
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

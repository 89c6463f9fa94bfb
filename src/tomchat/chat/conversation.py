"""The conversation: rooms, user messages, and the character's streamed replies.

One reply streams per room at a time. The queue of user messages waiting for an answer is
the log itself (user messages posted after the last reply started), so whatever arrives
while Tom is talking is answered together by the next reply.

Across processes sharing one database, a room's reply loop runs only while it holds the
room's lease (``store.leases``). A process that cannot take the lease leaves the room to the
holder, which looks at the queue again after it lets go, so no message is left waiting. A
watchdog hands rooms whose holder died (lease expired, or its pid gone on this machine) to
the local reply loop, which closes the orphaned reply as ``interrupted`` with its committed
text before answering what is still waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from tomchat import logs, metrics
from tomchat.ai.protocols import ChatModel, ChatModelError, ChatTurn
from tomchat.chat.voice import ReplySpeaker, Voice
from tomchat.cluster.bus import Bus, LocalBus, ProcessIdentity, Signal
from tomchat.domain.character import Character
from tomchat.domain.events import (
    Event,
    MessagePosted,
    MessageSource,
    NewEvent,
    RecordedEvent,
    ReplyChunk,
    ReplyCompleted,
    ReplyStarted,
    ReplyStatus,
    RoomCreated,
    new_message_id,
)
from tomchat.domain.transcript import STREAMING, MessageRow
from tomchat.store.event_store import ConcurrencyError, EventStore, LeaseLost
from tomchat.store.leases import ReplyLeases
from tomchat.store.rooms import RoomReader

log = logging.getLogger(__name__)

CONTEXT_MESSAGES = 30
_CLIENT_ID_NAMESPACE = uuid.UUID("6f1c2a52-4c8e-4a55-9d0e-7a0f1b6c3e11")


@dataclass
class _Outcome:
    status: ReplyStatus = "complete"
    error: str | None = None


@dataclass(eq=False)
class _Reply:
    room_id: str
    message_id: str
    producer: asyncio.Task[None] | None = None
    pieces: asyncio.Queue[str | _Outcome] = field(default_factory=asyncio.Queue)
    stop_requested: bool = False
    lease_lost: bool = False  # another process took the room: write nothing more
    outcome_sent: bool = False

    def producer_done(self, task: asyncio.Task[None]) -> None:
        # A task cancelled before its first step never runs its finally: say how it ended
        # here, or the writer would wait for an outcome forever.
        if not self.outcome_sent:
            self.outcome_sent = True
            self.pieces.put_nowait(_Outcome("stopped" if self.stop_requested else "interrupted"))


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
    ) -> None:
        self.store = store
        self.reader = reader
        self.model = model
        self.character = character
        self.voice = voice
        self.leases = leases or ReplyLeases(store.db, ProcessIdentity.current())
        self.bus = bus or LocalBus()
        self.bus.subscribe(self._on_signal)
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._wanted: set[str] = set()
        self._replies: dict[str, _Reply] = {}
        self._held: dict[str, int] = {}  # rooms whose lease we hold -> which hold
        self._holds = itertools.count(1)
        self._dead_owners: dict[str, str] = {}  # room -> its holder, seen dead by the watchdog
        self._background: set[asyncio.Task[Any]] = set()  # signals being sent
        self._periodic: list[asyncio.Task[None]] = []  # lease renewal and the watchdog
        self._closing = False

    # -- rooms -----------------------------------------------------------------------------

    async def ensure_room(self, room_id: str, name: str | None = None) -> bool:
        """Create the room (with the character's greeting) unless it exists; True if created."""
        if await self.store.head(room_id):
            return False
        greeting_id = new_message_id()
        try:
            await self.store.append(
                room_id,
                [
                    RoomCreated(name=name or room_id, character=self.character.name),
                    ReplyStarted(message_id=greeting_id, character=self.character.name),
                    ReplyCompleted(
                        message_id=greeting_id, content=self.character.greeting, status="complete"
                    ),
                ],
                expected_version=0,
            )
        except ConcurrencyError:
            return False  # someone else created it first: same outcome
        return True

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

    async def stop(self, room_id: str, message_id: str) -> bool:
        """Stop a reply in flight, here or in another process; True if the reply is this
        room's (streaming or already finished)."""
        if self._stop_here(room_id, message_id):
            return True
        row = await self.reader.message(message_id)
        if row is None or row.room_id != room_id or not row.is_ai:
            return False
        if row.status == STREAMING:
            # Another process writes it. The request on the lease row reaches the writer at
            # its next renewal whatever happens; the signal is the prompt way.
            await self.leases.request_stop(room_id, message_id)
            await self.bus.publish(Signal("stop", room_id, message_id))
        return True

    def _stop_here(self, room_id: str, message_id: str) -> bool:
        reply = self._replies.get(room_id)
        if reply is None or reply.message_id != message_id:
            return False
        reply.stop_requested = True
        if reply.producer is not None:
            reply.producer.cancel()
        return True

    def streaming_in(self, room_id: str) -> str | None:
        reply = self._replies.get(room_id)
        return reply.message_id if reply else None

    async def _reply_loop(self, room_id: str) -> None:
        try:
            while room_id in self._wanted and not self._closing:
                self._wanted.discard(room_id)
                if not await self._hold(room_id):
                    # A live process holds the room. It reads the queue again after letting
                    # go, and what we were kicked for was committed before we asked.
                    continue
                try:
                    await self._serve(room_id)
                finally:
                    await self._let_go(room_id)
                # A message another process saw us holding the room for may have come after
                # our last look: look once more now that the room is free.
                if not self._closing and await self.reader.unanswered(room_id):
                    self._wanted.add(room_id)
        except LeaseLost:
            log.warning("room %s was taken over by another process", room_id)
        except Exception:
            log.exception("reply loop of room %s failed", room_id)
        finally:
            # Removal happens in the same step as the last check, so a kick is never lost.
            self._loops.pop(room_id, None)

    async def _hold(self, room_id: str) -> bool:
        dead_owner = self._dead_owners.pop(room_id, None)
        if not await self.leases.acquire(room_id, dead_owner=dead_owner):
            return False
        self._held[room_id] = next(self._holds)
        return True

    async def _let_go(self, room_id: str) -> None:
        if self._held.pop(room_id, None) is None:
            return  # lost meanwhile: not ours to release
        try:
            await self.leases.release(room_id)
        except Exception as exc:
            # It expires by itself; until then the room waits for the watchdogs.
            log.warning("could not release the lease of room %s: %s", room_id, exc)

    async def _serve(self, room_id: str) -> None:
        """Holding the room: close what a dead holder left, then answer until nobody waits."""
        await self._close_orphans(room_id)
        while not self._closing:
            pending = await self.reader.unanswered(room_id)
            if not pending:
                return
            await self._reply(room_id, pending)

    async def _close_orphans(self, room_id: str) -> int:
        """Close replies left streaming by a holder that is gone, keeping their text.

        We hold the lease and write no reply yet, so whatever streams in this room has no
        writer; taking the lease made its committed text final (see ``store.leases``).
        """
        orphans = await self.reader.streaming_replies_in(room_id)
        for orphan in orphans:
            log.warning("closing reply %s left streaming in room %s", orphan.row.id, room_id)
            await self._append(
                room_id,
                [
                    ReplyCompleted(
                        message_id=orphan.row.id,
                        content=orphan.text,
                        status="interrupted",
                        error="the server writing this reply stopped",
                    )
                ],
            )
        return len(orphans)

    async def _append(self, room_id: str, events: Sequence[Event]) -> None:
        """Append as the holder of the room's lease: refused once it has passed on."""
        await self.store.append(room_id, events, lease_owner=self.leases.owner)

    async def _reply(self, room_id: str, pending: Sequence[MessageRow]) -> None:
        reply = _Reply(room_id, new_message_id())
        logs.bind(room_id=room_id, message_id=reply.message_id)  # JSON log lines name them
        await self._append(
            room_id,
            [
                ReplyStarted(
                    message_id=reply.message_id,
                    character=self.character.name,
                    in_reply_to=tuple(m.id for m in pending),
                )
            ],
        )
        self._replies[room_id] = reply
        speaker = self.voice.start(room_id, reply.message_id) if self.voice else None
        try:
            turns = self._turns(await self.reader.recent(room_id, CONTEXT_MESSAGES))
            reply.producer = asyncio.create_task(self._produce(reply, turns, speaker))
            reply.producer.add_done_callback(reply.producer_done)
            with metrics.ROOMS_STREAMING.track_inprogress():  # /metrics: rooms streaming now
                await self._write(reply)
        finally:
            self._replies.pop(room_id, None)
            if reply.producer is not None and not reply.producer.done():
                reply.producer.cancel()
            if speaker is not None and reply.producer is None:
                speaker.abort()  # the model never ran: nothing will be said

    async def _produce(
        self, reply: _Reply, turns: list[ChatTurn], speaker: ReplySpeaker | None = None
    ) -> None:
        """Read the model into the reply's queue, never waiting on the database."""
        outcome = _Outcome()
        try:
            # Observed for /metrics: the model's time to its first text.
            stream = metrics.first_item_timed(
                self.model.stream_reply(turns), metrics.LLM_FIRST_TOKEN
            )
            async for piece in stream:
                if piece:
                    reply.pieces.put_nowait(piece)
                    if speaker is not None:
                        speaker.say(piece)  # spoken as it comes, not after the commit
        except asyncio.CancelledError:
            outcome = _Outcome("stopped" if reply.stop_requested else "interrupted")
        except ChatModelError as exc:
            outcome = _Outcome("failed", str(exc))
        except Exception as exc:
            log.exception("chat model crashed")
            outcome = _Outcome("failed", f"the model failed: {type(exc).__name__}")
        finally:
            reply.outcome_sent = True
            reply.pieces.put_nowait(outcome)
            if speaker is not None:
                # A stopped reply goes quiet at once; a failed one still says its text so far.
                if outcome.status in ("stopped", "interrupted"):
                    speaker.abort()
                else:
                    speaker.finish()

    async def _write(self, reply: _Reply) -> None:
        """Append whatever pieces are waiting as one request, so a fast model is never
        throttled by commit latency and a slow one still sees each piece committed at once."""
        texts: list[str] = []
        outcome: _Outcome | None = None
        try:
            while outcome is None:
                waiting = [await reply.pieces.get()]
                while not reply.pieces.empty():
                    waiting.append(reply.pieces.get_nowait())
                chunks = []
                for item in waiting:
                    if isinstance(item, _Outcome):
                        outcome = item
                        break
                    chunks.append(
                        ReplyChunk(message_id=reply.message_id, index=len(texts), text=item)
                    )
                    texts.append(item)
                if chunks:
                    await self._append(reply.room_id, chunks)
        except LeaseLost:
            # We stalled past the lease and another process took the room: it closes this
            # reply with what was committed, and nothing more of ours may be written.
            log.warning("reply %s was taken over by another process", reply.message_id)
            reply.lease_lost = True
            outcome = _Outcome("interrupted")
        except Exception as exc:
            log.exception("writing reply %s failed", reply.message_id)
            outcome = _Outcome("failed", f"the reply could not be saved: {type(exc).__name__}")
        except asyncio.CancelledError:
            outcome = _Outcome("interrupted", "the server stopped")
            raise
        finally:
            assert outcome is not None
            if not reply.lease_lost:
                with contextlib.suppress(Exception):
                    await self._append(
                        reply.room_id,
                        [
                            ReplyCompleted(
                                message_id=reply.message_id,
                                content="".join(texts),
                                status=outcome.status,
                                error=outcome.error,
                            )
                        ],
                    )

    def _turns(self, history: Sequence[MessageRow]) -> list[ChatTurn]:
        prompt = self.character.system_prompt
        if self.character.example_dialogue:
            prompt += "\n\nExample dialogue:\n" + self.character.example_dialogue
        turns = [ChatTurn("system", prompt)]
        for row in history:
            if row.is_ai and row.content:
                turns.append(ChatTurn("assistant", row.content))
            elif not row.is_ai:
                turns.append(ChatTurn("user", f"{row.author}: {row.content}"))
        return turns

    # -- other processes -------------------------------------------------------------------

    async def _on_signal(self, signal: Signal) -> None:
        if signal.kind == "kick":
            if not self._closing:
                self.kick(signal.room_id)
        elif signal.kind == "stop" and signal.message_id is not None:
            self._stop_here(signal.room_id, signal.message_id)

    async def renew_leases(self) -> None:
        """Extend the leases we hold; act on stops asked elsewhere and on leases lost."""
        held = dict(self._held)
        if not held:
            return
        try:
            renewed = await self.leases.renew(held)
        except Exception as exc:
            log.warning("could not renew reply leases: %s", exc)
            return
        for room_id, hold in held.items():
            if self._held.get(room_id) != hold:
                continue  # let go (or taken anew) while we renewed
            if room_id not in renewed:
                log.warning("lost the lease of room %s to another process", room_id)
                del self._held[room_id]
                reply = self._replies.get(room_id)
                if reply is not None:
                    reply.lease_lost = True
                    if reply.producer is not None:
                        reply.producer.cancel()
            elif (stop := renewed[room_id]) is not None:
                self._stop_here(room_id, stop)

    async def sweep(self) -> list[str]:
        """Hand the rooms whose holder has died to their reply loops here; returns them."""
        found = []
        for lease in await self.leases.held_elsewhere():
            dead = self.leases.identity.sees_dead(lease.owner, lease.node, lease.pid)
            if not (dead or lease.expired) or lease.room_id in self._loops:
                continue
            if dead:
                self._dead_owners[lease.room_id] = lease.owner
            self.kick(lease.room_id)
            found.append(lease.room_id)
        return found

    async def _every(self, seconds: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:
                log.exception("%s failed", getattr(job, "__name__", job))

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- start-up and shut-down ------------------------------------------------------------

    async def recover(self) -> int:
        """Hand the rooms that stopped processes left mid-reply to the reply loop, which
        closes those replies as ``interrupted`` (text kept) and answers what still waits.

        Rooms whose holder is known dead (this machine, pid gone: a crash and restart) or
        whose lease expired go at once; a lease that might still be alive is left to the
        watchdog. Returns the number of rooms handed over.
        """
        rooms = set(await self.sweep())
        for room_id in await self.reader.rooms_with_streaming_replies():
            # No holder at all: an older schema, or a release after a write that failed.
            if room_id not in rooms and await self.leases.holder(room_id) is None:
                self.kick(room_id)
                rooms.add(room_id)
        return len(rooms)

    def start(self) -> None:
        """Renew held leases every third of their length; look for dead holders often
        enough that their rooms are taken over within a second or so of expiry."""
        if self._periodic:
            return
        seconds = self.leases.seconds
        self._periodic = [
            asyncio.create_task(self._every(seconds / 3, self.renew_leases), name="lease-renewal"),
            asyncio.create_task(self._every(min(1.0, seconds / 4), self.sweep), name="watchdog"),
        ]

    async def close(self) -> None:
        """Stop taking work; replies in flight end as ``interrupted`` with their text kept,
        and whatever still waits is left to another process."""
        self._closing = True
        for reply in list(self._replies.values()):
            if reply.producer is not None:
                reply.producer.cancel()
        rooms = list(self._loops)
        loops = list(self._loops.values())
        if loops:
            await asyncio.wait(loops, timeout=10)
        for room_id in rooms:
            self.kick(room_id)  # while closing, a kick goes to the other processes
        for task in self._periodic:
            task.cancel()
        # Signals still being sent get a moment, then everything left is cancelled.
        tasks = [*self._periodic, *self._background]
        if self._background:
            await asyncio.wait(self._background, timeout=2)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._periodic.clear()

"""The conversation: rooms, user messages, and the character's streamed replies.

One reply streams per room at a time. The queue of user messages waiting for an answer is
the log itself (user messages posted after the last reply started), so whatever arrives
while Tom is talking is answered together by the next reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from tomchat.ai.protocols import ChatModel, ChatModelError, ChatTurn
from tomchat.domain.character import Character
from tomchat.domain.events import (
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
from tomchat.domain.transcript import MessageRow
from tomchat.store.event_store import ConcurrencyError, EventStore
from tomchat.store.rooms import RoomReader
from tomchat.voice import ReplySpeaker, Voice

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


class Conversation:
    def __init__(
        self,
        store: EventStore,
        reader: RoomReader,
        model: ChatModel,
        character: Character,
        voice: Voice | None = None,
    ) -> None:
        self.store = store
        self.reader = reader
        self.model = model
        self.character = character
        self.voice = voice
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._wanted: set[str] = set()
        self._replies: dict[str, _Reply] = {}
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
            return
        self._wanted.add(room_id)
        if room_id not in self._loops:
            task = asyncio.create_task(self._reply_loop(room_id), name=f"replies:{room_id}")
            self._loops[room_id] = task

    async def stop(self, room_id: str, message_id: str) -> bool:
        """Stop a reply in flight; True if it was streaming here or has already finished."""
        reply = self._replies.get(room_id)
        if reply is not None and reply.message_id == message_id:
            reply.stop_requested = True
            if reply.producer is not None:
                reply.producer.cancel()
            return True
        row = await self.reader.message(message_id)
        return row is not None and row.room_id == room_id and row.is_ai

    def streaming_in(self, room_id: str) -> str | None:
        reply = self._replies.get(room_id)
        return reply.message_id if reply else None

    async def _reply_loop(self, room_id: str) -> None:
        try:
            while room_id in self._wanted and not self._closing:
                self._wanted.discard(room_id)
                pending = await self.reader.unanswered(room_id)
                if pending:
                    await self._reply(room_id, pending)
        except Exception:
            log.exception("reply loop of room %s failed", room_id)
        finally:
            # Removal happens in the same step as the last check, so a kick is never lost.
            self._loops.pop(room_id, None)

    async def _reply(self, room_id: str, pending: Sequence[MessageRow]) -> None:
        reply = _Reply(room_id, new_message_id())
        await self.store.append(
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
            async for piece in self.model.stream_reply(turns):
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
                    await self.store.append(reply.room_id, chunks)
        except Exception as exc:
            log.exception("writing reply %s failed", reply.message_id)
            outcome = _Outcome("failed", f"the reply could not be saved: {type(exc).__name__}")
        except asyncio.CancelledError:
            outcome = _Outcome("interrupted", "the server stopped")
            raise
        finally:
            assert outcome is not None
            with contextlib.suppress(Exception):
                await self.store.append(
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

    # -- start-up and shut-down ------------------------------------------------------------

    async def recover(self) -> int:
        """Close replies a previous run left streaming (their writer is gone)."""
        left = await self.reader.streaming_replies()
        for item in left:
            await self.store.append(
                item.row.room_id,
                [
                    ReplyCompleted(
                        message_id=item.row.id,
                        content=item.text,
                        status="interrupted",
                        error="the server stopped while this reply was being written",
                    )
                ],
            )
            self.kick(item.row.room_id)
        return len(left)

    async def close(self) -> None:
        """Stop taking work; replies in flight end as ``interrupted`` with their text kept."""
        self._closing = True
        for reply in list(self._replies.values()):
            if reply.producer is not None:
                reply.producer.cancel()
        loops = list(self._loops.values())
        if loops:
            await asyncio.wait(loops, timeout=10)

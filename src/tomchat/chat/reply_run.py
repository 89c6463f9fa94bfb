"""One reply's run: the model's pieces become chunks in the log, and Tom's voice says them.

A run has two tasks. The *producer* reads the model into a queue and hands each piece to the
speaker at once, never waiting on the database; the *writer* (the caller of
:meth:`ReplyRun.stream`) appends whatever pieces are waiting as one request, so a fast model
is never throttled by commit latency and a slow one still sees each piece committed at once.
The run ends with one ``reply.completed`` carrying the whole text and how the reply ended:
``complete``, ``stopped`` (someone asked), ``failed`` (the model or the write failed) or
``interrupted`` (this process is closing) — unless the room's lease was lost, in which case
the process that took the room closes the reply and nothing more of ours is written.

Everything a run touches comes in through the small protocols below, so a test drives it
with a scripted model and an in-memory log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tomchat import metrics
from tomchat.ai.protocols import ChatModel, ChatModelError, ChatTurn, ReplyEnd
from tomchat.ai.replies import bounded
from tomchat.chat.context import as_turn
from tomchat.domain.character import Character
from tomchat.domain.events import (
    Event,
    ReplyChunk,
    ReplyCompleted,
    ReplyStarted,
    ReplyStatus,
    TokenUsage,
    new_message_id,
)
from tomchat.domain.transcript import MessageRow
from tomchat.store.event_store import LeaseLost

log = logging.getLogger(__name__)

CONTEXT_MESSAGES = 30


class AppendEvents(Protocol):
    """Append events to a room's log as the holder of its lease; raises ``LeaseLost`` once
    the lease has passed to another process."""

    async def __call__(self, room_id: str, events: Sequence[Event], /) -> object: ...


class AppendAt(Protocol):
    """Append events only if the room is still at ``version``; raises ``ConcurrencyError``
    if it has moved on (and ``LeaseLost`` as :class:`AppendEvents` does)."""

    async def __call__(self, room_id: str, events: Sequence[Event], version: int, /) -> object: ...


class History(Protocol):
    """The room's latest messages, oldest first: the model's context."""

    async def recent(self, room_id: str, limit: int) -> Sequence[MessageRow]: ...


class LoggedText(Protocol):
    """The text of a reply's chunks as the log holds them (``store.rooms.RoomReader``)."""

    async def reply_text(self, room_id: str, message_id: str) -> str: ...


class Speaker(Protocol):
    """Says one reply while its text streams (``chat.voice.ReplySpeaker``)."""

    def say(self, text: str) -> None: ...

    def finish(self) -> None:
        """No more text: say what is left."""
        ...

    def abort(self) -> None:
        """Go quiet now, keeping what was said."""
        ...


class Speakers(Protocol):
    """Gives each reply its speaker (``chat.voice.Voice``)."""

    def start(self, room_id: str, message_id: str, voice: str | None = None) -> Speaker: ...


class Context(Protocol):
    """The model's input for a room: the system prompt, the room's memory, then the newest
    turns that fit the window (``chat.memory``)."""

    async def turns(
        self,
        room_id: str,
        system_prompt: str,
        speaker: Character | None = None,
        *,
        upto: int | None = None,
    ) -> list[ChatTurn]: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    status: ReplyStatus = "complete"
    error: str | None = None
    finish_reason: str | None = None
    usage: TokenUsage | None = None


def prompt_turns(character: Character, history: Sequence[MessageRow]) -> list[ChatTurn]:
    """The model's input: the character's prompt, then the room's messages (replies still
    streaming have no content yet and are left out). The character's own replies are the
    assistant's; people and the other characters speak as ``name: text``."""
    prompt = character.system_prompt
    if character.example_dialogue:
        prompt += "\n\nExample dialogue:\n" + character.example_dialogue
    turns = [ChatTurn("system", prompt)]
    for row in history:
        turn = as_turn(row, character)
        if turn is not None:
            turns.append(turn)
    return turns


@dataclass(frozen=True, slots=True)
class Replier:
    """What every reply needs; :meth:`reply` begins one."""

    model: ChatModel
    character: Character
    append: AppendEvents
    history: History
    voice: Speakers | None = None
    context: Context | None = None  # None: the last ``context_messages`` messages, unbounded
    context_messages: int = CONTEXT_MESSAGES
    # Starts a reply at the version its queue and context were read at (see ReplyRun.start).
    append_at: AppendAt | None = None
    # Asked for a reply's text after a write failed; without it such a reply is left
    # streaming, for the watchdog to close with its logged text.
    logged: LoggedText | None = None

    def reply(
        self, room_id: str, message_id: str | None = None, character: Character | None = None
    ) -> ReplyRun:
        """A reply by ``character`` (a member of the room's cast; the default one if None)."""
        return ReplyRun(self, room_id, message_id or new_message_id(), character)


class ReplyRun:
    """One reply: :meth:`start` announces it, :meth:`stream` writes it to the end.

    :meth:`stop`, :meth:`lose_lease` and :meth:`interrupt` may be called from any task while
    it streams.
    """

    def __init__(
        self,
        replier: Replier,
        room_id: str,
        message_id: str,
        character: Character | None = None,
    ) -> None:
        self.replier = replier
        self.character = character or replier.character
        self.room_id = room_id
        self.message_id = message_id
        # The model's pieces in order, then None once the producer has ended.
        self._pieces: asyncio.Queue[str | None] = asyncio.Queue()
        self._producer: asyncio.Task[Outcome] | None = None
        self._stop_requested = False
        self._history: Sequence[MessageRow] | None = None  # the context, if read with the queue
        self._version: int | None = None  # the room's version the reply started at
        self.stopped_by: str | None = None  # the username that asked to stop, if known
        self.lease_lost = False  # another process took the room: write nothing more

    async def start(
        self,
        pending: Sequence[MessageRow],
        *,
        version: int | None = None,
        history: Sequence[MessageRow] | None = None,
    ) -> None:
        """Append ``reply.started``, answering every message in ``pending`` at once.

        With ``version`` (the room's version when ``pending`` and ``history`` were read
        together) the start is placed only if the room is still there, so ``in_reply_to``
        names exactly the messages the reply's context holds: a message that came in
        meanwhile raises ``ConcurrencyError`` and the caller reads the queue again.
        """
        started = ReplyStarted(
            message_id=self.message_id,
            character=self.character.name,
            in_reply_to=tuple(m.id for m in pending),
            character_id=self.character.key,
        )
        if version is not None and self.replier.append_at is not None:
            await self.replier.append_at(self.room_id, [started], version)
        else:
            await self.replier.append(self.room_id, [started])
        self._history = history
        self._version = version

    def stop(self, by: str | None = None) -> None:
        """Someone asked to stop: the text so far is kept, status ``stopped``."""
        if not self._stop_requested:
            self.stopped_by = by
        self._stop_requested = True
        self.interrupt()

    def lose_lease(self) -> None:
        """Another process took the room: stop at once and write nothing more."""
        self.lease_lost = True
        self.interrupt()

    def interrupt(self) -> None:
        """End the model's stream now (this process is closing): status ``interrupted``."""
        if self._producer is not None:
            self._producer.cancel()

    async def stream(self) -> None:
        """Run the model and write its pieces until it ends, is stopped or the lease is lost."""
        replier = self.replier
        character = self.character
        speaker: Speaker | None = None
        if replier.voice is not None:
            # Each character speaks in its own voice (the server's default if it has none).
            speaker = (
                replier.voice.start(self.room_id, self.message_id, character.voice)
                if character.voice
                else replier.voice.start(self.room_id, self.message_id)
            )
        try:
            if replier.context is not None:
                # The token-bounded context with the room's memory, as of the version the
                # reply started at: exactly the messages its in_reply_to names, no later ones.
                system = prompt_turns(character, [])[0].content
                turns = await replier.context.turns(
                    self.room_id, system, character, upto=self._version
                )
            else:
                history = self._history
                if history is None:
                    history = await replier.history.recent(self.room_id, replier.context_messages)
                turns = prompt_turns(character, history)
            self._producer = asyncio.create_task(self._produce(turns, speaker))
            # A task cancelled before its first step never runs its finally: the done
            # callback, not the producer, says it has ended, or the writer would wait for an
            # outcome forever.
            self._producer.add_done_callback(lambda _: self._pieces.put_nowait(None))
            await self._write(self._producer)
        finally:
            if self._producer is not None and not self._producer.done():
                self._producer.cancel()
            if speaker is not None and self._producer is None:
                speaker.abort()  # the model never ran: nothing will be said

    async def _produce(self, turns: list[ChatTurn], speaker: Speaker | None) -> Outcome:
        """Read the model into the queue, never waiting on the database."""
        outcome = Outcome()
        try:
            # ``bounded`` caps the length and ends the stream with exactly one ReplyEnd.
            # The model's time to its first piece is observed here, in this loop, rather
            # than by one more generator layer every chunk would pass through.
            started, timed = time.monotonic(), False
            async for piece in bounded(self.replier.model.stream_reply(turns)):
                if not timed:
                    metrics.LLM_FIRST_TOKEN.observe(time.monotonic() - started)
                    timed = True
                if isinstance(piece, ReplyEnd):
                    outcome = Outcome(piece.status, None, piece.finish_reason, piece.usage)
                elif piece:
                    self._pieces.put_nowait(piece)
                    if speaker is not None:
                        speaker.say(piece)  # spoken as it comes, not after the commit
        except asyncio.CancelledError:
            outcome = self._cut_short()
        except ChatModelError as exc:
            outcome = Outcome("failed", str(exc))
        except Exception as exc:
            log.exception("chat model crashed")
            outcome = Outcome("failed", f"the model failed: {type(exc).__name__}")
        finally:
            if speaker is not None:
                # A stopped reply goes quiet at once; a failed one still says its text so far.
                if outcome.status in ("stopped", "interrupted"):
                    speaker.abort()
                else:
                    speaker.finish()
        return outcome

    def _cut_short(self) -> Outcome:
        return Outcome("stopped" if self._stop_requested else "interrupted")

    def _ended(self, producer: asyncio.Task[Outcome]) -> Outcome:
        # Cancelled before its first step, the producer never chose an outcome: say it here.
        return self._cut_short() if producer.cancelled() else producer.result()

    async def _write(self, producer: asyncio.Task[Outcome]) -> None:
        """Append whatever pieces are waiting as one chunk, so a fast model is never
        throttled by commit latency and a slow one still sees each piece committed at once.

        The closing ``reply.completed`` carries exactly the text of the chunks in the log:
        pieces count once their append has committed, and when an append failed (it may
        have committed all the same: a connection cut during the commit) the log is asked.
        """
        committed: list[str] = []
        outcome: Outcome | None = None
        ask_the_log = False
        writing: asyncio.Task[object] | None = None
        chunk: ReplyChunk | None = None
        try:
            while outcome is None:
                pieces: list[str] = []
                item = await self._pieces.get()
                while item is not None:
                    pieces.append(item)
                    if self._pieces.empty():
                        break
                    item = self._pieces.get_nowait()
                else:  # None: the producer has ended, nothing comes after it
                    outcome = self._ended(producer)
                # Every piece that came while the last append was committing goes out as one
                # chunk: when the model is slower than a commit (the usual case) each piece is
                # a chunk of its own, and under load the chunks grow instead of queueing, so
                # the store, the fan-out and every client do less work per piece just when
                # there is more of it. A replay shows such a chunk at once, as the room did.
                if pieces:
                    text = "".join(pieces)
                    chunk = ReplyChunk(message_id=self.message_id, index=len(committed), text=text)
                    # Shielded: a cancelled writer still learns whether it committed.
                    writing = asyncio.ensure_future(self.replier.append(self.room_id, [chunk]))
                    await asyncio.shield(writing)
                    writing = None
                    committed.append(text)
        except LeaseLost:
            # We stalled past the lease and another process took the room: it closes this
            # reply with what was committed, and nothing more of ours may be written.
            log.warning("reply %s was taken over by another process", self.message_id)
            self.lease_lost = True
            outcome = Outcome("interrupted")
        except Exception as exc:
            log.exception("writing reply %s failed", self.message_id)
            outcome = Outcome("failed", f"the reply could not be saved: {type(exc).__name__}")
            ask_the_log = True
        except asyncio.CancelledError:
            outcome = Outcome("interrupted", "the server stopped")
            if writing is not None:
                # The event store writes a request whose caller went away: wait for it.
                try:
                    await writing
                    if chunk is not None:
                        committed.append(chunk.text)
                except Exception:
                    ask_the_log = True
            raise
        finally:
            assert outcome is not None
            if not self.lease_lost:
                await self._complete(outcome, committed, ask_the_log)

    async def _complete(self, outcome: Outcome, committed: list[str], ask_the_log: bool) -> None:
        """Append ``reply.completed`` with the text of the reply's logged chunks."""
        text = "".join(committed)
        if ask_the_log:
            logged = await self._logged_text()
            if logged is None:
                # Unknown: leave the reply streaming. Once this room's lease is let go, the
                # watchdog hands it to a reply loop that closes it with its logged text.
                log.warning("reply %s left streaming: its text could not be read", self.message_id)
                return
            text = logged
        with contextlib.suppress(Exception):
            await self.replier.append(
                self.room_id,
                [
                    ReplyCompleted(
                        message_id=self.message_id,
                        content=text,
                        status=outcome.status,
                        error=outcome.error,
                        finish_reason=outcome.finish_reason,
                        usage=outcome.usage,
                        stopped_by=self.stopped_by if outcome.status == "stopped" else None,
                    )
                ],
            )

    async def _logged_text(self) -> str | None:
        if self.replier.logged is None:
            return None
        try:
            return await self.replier.logged.reply_text(self.room_id, self.message_id)
        except Exception as exc:
            log.warning("could not read the text of reply %s: %s", self.message_id, exc)
            return None

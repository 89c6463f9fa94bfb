"""A room's model context over time: the newest turns that fit, and a summary of the rest.

When turns fall out of the window, the model summarises them (with the previous summary) in
the background and the summary is appended as ``memory.summarized``; later contexts send it
in their place. The reply being written never waits for a summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from tomchat.ai.protocols import SUMMARY_INSTRUCTION, ChatModel, ChatTurn
from tomchat.ai.replies import bounded
from tomchat.chat.context import Counter, as_turn, build_context, count_tokens
from tomchat.domain.character import Character
from tomchat.domain.events import MemorySummarized
from tomchat.domain.transcript import MessageRow
from tomchat.store.event_store import EventStore
from tomchat.store.rooms import MemorySeen, RoomReader

log = logging.getLogger(__name__)

# Rows read past the memory at most: the window holds fewer anyway.
HISTORY_LIMIT = 500
SUMMARY_MAX_CHARS = 4000


class RoomMemory:
    def __init__(
        self,
        store: EventStore,
        reader: RoomReader,
        model: ChatModel,
        *,
        context_tokens: int = 8192,
        max_tokens: int = 800,
        count: Counter = count_tokens,
    ) -> None:
        self.store = store
        self.reader = reader
        self.model = model
        # The reply's own tokens come out of the same window.
        self.budget = max(context_tokens - max_tokens, 256)
        self.count = count
        self._summaries: dict[str, asyncio.Task[None]] = {}
        # Per room, how far its log was searched for a summary: each reply then searches
        # only the events since the last one (a room's log is mostly chunks).
        self._seen: dict[str, MemorySeen] = {}

    async def turns(
        self,
        room_id: str,
        system_prompt: str,
        speaker: Character | None = None,
        *,
        upto: int | None = None,
    ) -> list[ChatTurn]:
        """The context: system prompt, memory, then the newest turns that fit; with ``upto``
        only messages that began at or before that version (the reply's in_reply_to)."""
        memory, self._seen[room_id] = await self.reader.memory(room_id, self._seen.get(room_id))
        if memory is not None and not memory.summary:
            # Emptied by a deletion (``domain.redaction``): start over from the rows, which
            # no longer hold the words, and let a new summary be written.
            memory = None
        since = memory.through_version if memory else 0
        rows = await self.reader.since(room_id, since, HISTORY_LIMIT)
        if upto is not None:
            rows = [r for r in rows if r.first_version <= upto]
        context = build_context(
            system_prompt,
            memory.summary if memory else None,
            rows,
            self.budget,
            self.count,
            speaker,
        )
        if context.left_out and room_id not in self._summaries:
            task = asyncio.create_task(
                self._summarise(room_id, memory.summary if memory else None, context.left_out),
                name=f"memory:{room_id}",
            )
            self._summaries[room_id] = task
            task.add_done_callback(lambda _: self._summaries.pop(room_id, None))
        return context.turns

    async def wait(self) -> None:
        """Let the summaries under way finish (tests, shutdown)."""
        if self._summaries:
            await asyncio.wait(list(self._summaries.values()))

    async def aclose(self) -> None:
        for task in list(self._summaries.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _request(self, previous: str | None, rows: Sequence[MessageRow]) -> list[ChatTurn]:
        lines = []
        for row in rows:
            turn = as_turn(row)
            if turn is not None:
                lines.append(
                    turn.content if turn.role == "user" else f"{row.author}: {row.content}"
                )
        # The newest of what fell out matters most: drop from the oldest to fit the window.
        budget = self.budget - self.count(SUMMARY_INSTRUCTION) - 64
        text = f"(the summary so far) {previous}" if previous else ""
        used = self.count(text)
        kept: list[str] = []
        for line in reversed(lines):
            cost = self.count(line) + 1
            if used + cost > budget:
                break
            kept.append(line)
            used += cost
        body = "\n".join(([text] if text else []) + kept[::-1])
        return [ChatTurn("system", SUMMARY_INSTRUCTION), ChatTurn("user", body)]

    async def _summarise(
        self, room_id: str, previous: str | None, rows: Sequence[MessageRow]
    ) -> None:
        try:
            pieces = []
            async for piece in bounded(
                self.model.stream_reply(self._request(previous, rows)), SUMMARY_MAX_CHARS
            ):
                if isinstance(piece, str):
                    pieces.append(piece)
            summary = "".join(pieces).strip()
            if not summary:
                return
            event = MemorySummarized(
                character_id=None, through_version=rows[-1].last_version, summary=summary
            )
            await self.store.append(room_id, [event])
            log.info("room %s: summarised up to version %d", room_id, event.through_version)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # The next reply that leaves turns out tries again.
            log.warning("summarising room %s failed: %s", room_id, error)

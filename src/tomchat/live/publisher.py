"""Committed events out to Socket.IO rooms, in commit order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from tomchat.domain.events import RecordedEvent, ReplyAudio, ReplyCompleted, ReplyStarted
from tomchat.live.wire import ReplyInfo, live_event
from tomchat.store.rooms import RoomReader

log = logging.getLogger(__name__)


class Publisher:
    """Listens to the event store and emits each committed event to its room.

    The store calls ``on_commit`` synchronously after each commit; emitting happens in a task
    of its own so a slow socket never holds up the next group commit.
    """

    def __init__(self, sio: Any, reader: RoomReader) -> None:
        self.sio = sio
        self.reader = reader
        self._queue: asyncio.Queue[Sequence[RecordedEvent]] = asyncio.Queue()
        self._replies: dict[str, ReplyInfo] = {}
        self._task: asyncio.Task[None] | None = None

    def on_commit(self, batch: Sequence[RecordedEvent]) -> None:
        self._queue.put_nowait(batch)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="publisher")

    async def close(self) -> None:
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            batch = await self._queue.get()
            try:
                for recorded in batch:
                    await self._emit(recorded)
            except Exception:
                log.exception("publishing failed")
            finally:
                self._queue.task_done()

    async def _emit(self, recorded: RecordedEvent) -> None:
        event = recorded.event
        info: ReplyInfo | None = None
        match event:
            case ReplyStarted():
                self._replies[event.message_id] = ReplyInfo(event.character, recorded.recorded_at)
            case ReplyAudio():
                if (known := await self._reply_info(event.message_id)) is not None:
                    known.audio_url = event.audio_url
            case ReplyCompleted():
                info = await self._reply_info(event.message_id)
                self._replies.pop(event.message_id, None)
        out = live_event(recorded, info)
        if out is not None:
            name, payload = out
            await self.sio.emit(name, payload, room=recorded.room_id)

    async def _reply_info(self, message_id: str) -> ReplyInfo | None:
        info = self._replies.get(message_id)
        if info is None:
            # Started by another process or before a restart: the projection knows.
            row = await self.reader.message(message_id)
            if row is not None:
                info = ReplyInfo(row.author, row.created_at, row.audio_url)
                self._replies[message_id] = info
        return info

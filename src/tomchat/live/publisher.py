"""Committed events out to Socket.IO rooms, each room's in commit order."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

from tomchat.domain.events import RecordedEvent, ReplyAudio, ReplyCompleted, ReplyStarted
from tomchat.live.wire import ReplyInfo, live_event
from tomchat.store.rooms import RoomReader

log = logging.getLogger(__name__)


class Publisher:
    """Listens to the event store and emits each committed event to its room.

    The store calls ``on_commit`` synchronously after each commit. Each room with events to
    send has a lane (a queue and a task draining it): a room's events go out one after the
    other in commit (version) order, while rooms go out side by side. One queue for every
    room made each emit wait for the one before it, whatever its room — at a hundred rooms
    streaming, chunks queued up behind each other for whole seconds. A slow socket never
    holds up the next group commit either way: emitting only queues packets per socket.
    """

    def __init__(self, sio: Any, reader: RoomReader) -> None:
        self.sio = sio
        self.reader = reader
        self._lanes: dict[str, deque[RecordedEvent]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._replies: dict[str, ReplyInfo] = {}

    def on_commit(self, batch: Sequence[RecordedEvent]) -> None:
        for recorded in batch:
            lane = self._lanes.get(recorded.room_id)
            if lane is None:
                lane = self._lanes[recorded.room_id] = deque()
                task = asyncio.create_task(self._drain(recorded.room_id, lane))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            lane.append(recorded)

    def start(self) -> None:
        """Nothing to start: lanes come and go with the rooms' traffic."""

    async def close(self) -> None:
        """Wait until everything committed so far has been emitted."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _drain(self, room_id: str, lane: deque[RecordedEvent]) -> None:
        try:
            while lane:
                recorded = lane.popleft()
                try:
                    await self._emit(recorded)
                except Exception:
                    log.exception("publishing to room %s failed", room_id)
        finally:
            # Nothing runs between the empty check above and this: no event is stranded.
            if self._lanes.get(room_id) is lane:
                del self._lanes[room_id]

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

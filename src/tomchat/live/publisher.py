"""Committed events out to Socket.IO rooms, each room's in commit order."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, assert_never

from tomchat import metrics
from tomchat.domain.events import (
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
    ReplyStarted,
    RoomCastChanged,
    RoomCreated,
    RoomForked,
    RoomLocked,
    RoomRenamed,
)
from tomchat.live.engine_hooks import encode_event, fans_out_directly, frame_size, local_members
from tomchat.store.rooms import RoomReader
from tomchat.wire.outgoing import ReplyInfo, RoomState, live_event
from tomchat.wire.payloads import to_wire

log = logging.getLogger(__name__)


class Publisher:
    """Listens to the event store and emits each committed event to its room.

    The store calls ``on_commit`` synchronously after each commit, in commit order.

    On one process (python-socketio's in-memory manager) an event is fanned out right there:
    the packet is encoded once and put on each member's Engine.IO queue
    (``HookedEngineIO.send_packet_nowait``), with no task per member and nothing awaited,
    so every room gets its events in commit order by construction. An event that needs a
    database read first (the completion of a reply started by another process or before a
    restart), or that would put more than an eighth of the send buffer on a room's sockets
    in one batch, goes to its room's lane instead — a queue with a task draining it, one
    awaited ``sio.emit`` at a time — and the room's later events follow it there until the
    lane is empty, so order holds.

    Scaled out (the Redis manager), every event takes its room's lane and ``sio.emit``,
    which publishes to the other processes: rooms go out side by side, each in order.
    """

    def __init__(self, sio: Any, reader: RoomReader) -> None:
        self.sio = sio
        self.reader = reader
        self._lanes: dict[str, deque[RecordedEvent]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._replies: dict[str, ReplyInfo] = {}
        eio = getattr(sio, "eio", None)
        self._direct = fans_out_directly(sio)
        # What one batch may put on a room's sockets at once. Past it the room's events are
        # emitted one at a time, awaited, so sockets' writers drain in between and a big
        # batch never looks like a client that stopped reading (see ``sendbuffer``).
        self._burst: int = getattr(eio, "send_buffer_bytes", 0) // 8

    def on_commit(self, batch: Sequence[RecordedEvent]) -> None:
        sent: dict[str, int] = {}  # bytes fanned out at once to each room, this batch
        for recorded in batch:
            room = recorded.room_id
            lane = self._lanes.get(room)
            if lane is None:
                if self._direct:
                    size = self._emit_now(recorded, self._burst - sent.get(room, 0))
                    if size is not None:
                        sent[room] = sent.get(room, 0) + size
                        continue
                lane = self._lanes[room] = deque()
                task = asyncio.create_task(self._drain(room, lane))
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

    def _emit_now(self, recorded: RecordedEvent, budget: int) -> int | None:
        """Fan ``recorded`` out at once and return its size; None (having done nothing) if it
        needs a database read, or if it would take the room's burst past ``budget``."""
        event = recorded.event
        info: ReplyInfo | None = None
        match event:
            case ReplyAudio():
                if event.message_id not in self._replies:
                    return None
            case ReplyCompleted():
                if (info := self._replies.get(event.message_id)) is None:
                    return None
            case ReplyChosen():
                return None  # its slot comes from the projection
            case MessageEdited() | MessageRedacted() | RoomForked() | MessageImported():
                pass
            case (
                ReplyChunk() | MessagePosted() | ReplyStarted() | RoomCreated() | MemorySummarized()
            ):
                pass  # need nothing from the database
            case RoomRenamed() | RoomLocked() | RoomCastChanged():
                return None  # roomChanged says the whole room state: read it
            case MemberKicked() | CharacterCreated() | CharacterUpdated() | CharacterArchived():
                pass
            case _:
                assert_never(event)
        out = live_event(recorded, info)
        frames = encode_event(self.sio, out[0], to_wire(out[1])) if out is not None else []
        size = sum(frame_size(f) for f in frames)
        if size > budget:
            return None
        self._remember(recorded)
        send = self.sio.eio.send_packet_nowait
        for _sid, eio_sid in local_members(self.sio, recorded.room_id):
            for frame in frames:
                send(eio_sid, frame)
        _observe_lag(recorded)
        return size

    async def _emit(self, recorded: RecordedEvent) -> None:
        event = recorded.event
        info = (
            await self._reply_info(event.message_id)
            if isinstance(event, ReplyCompleted | ReplyChosen)
            else None
        )
        state: RoomState | None = None
        if isinstance(event, RoomRenamed | RoomLocked | RoomCastChanged):
            room = await self.reader.room(recorded.room_id)
            if room is not None:
                state = RoomState(room.name or room.id, room.locked, room.cast, room.reply_mode)
        self._remember(recorded)
        out = live_event(recorded, info, state)
        if out is not None:
            name, payload = out
            await self.sio.emit(name, to_wire(payload), room=recorded.room_id)
            _observe_lag(recorded)

    def _remember(self, recorded: RecordedEvent) -> None:
        """Follow replies from start to completion: ``aiComplete`` needs their author."""
        event = recorded.event
        match event:
            case ReplyStarted():
                self._replies[event.message_id] = ReplyInfo(
                    event.character,
                    recorded.recorded_at,
                    character_id=event.character_id,
                    alternative_of=event.alternative_of,
                )
            case ReplyAudio():
                # The final audio event usually comes after completion: never re-cache then.
                if (known := self._replies.get(event.message_id)) is not None:
                    known.audio_url = event.audio_url
            case ReplyCompleted():
                self._replies.pop(event.message_id, None)
                # One line per reply, for operators (JSON logs carry the ids as fields).
                log.info(
                    "reply %s ended %s (%d characters)",
                    event.message_id,
                    event.status,
                    len(event.content),
                    extra={"room_id": recorded.room_id, "message_id": event.message_id},
                )
            case (
                ReplyChunk()
                | MessagePosted()
                | RoomCreated()
                | MemorySummarized()
                | RoomLocked()
                | RoomRenamed()
                | MemberKicked()
            ):
                pass
            case RoomCastChanged() | CharacterCreated() | CharacterUpdated() | CharacterArchived():
                pass
            case ReplyChosen() | MessageEdited() | MessageRedacted():
                pass
            case RoomForked() | MessageImported():
                pass
            case _:
                assert_never(event)

    async def _reply_info(self, message_id: str) -> ReplyInfo | None:
        if (info := self._replies.get(message_id)) is not None:
            return info
        # Started by another process or before a restart: the projection knows.
        row = await self.reader.message(message_id)
        if row is None:
            return None
        return ReplyInfo(
            row.author,
            row.created_at,
            row.audio_url,
            character_id=row.character_id,
            alternative_of=row.alternative_of,
        )


def _observe_lag(recorded: RecordedEvent) -> None:
    """A reply chunk's way from its append (the clock the store stamps it with) to the room."""
    if isinstance(recorded.event, ReplyChunk):
        lag = (datetime.now(UTC) - recorded.recorded_at).total_seconds()
        metrics.CHUNK_DELIVERY_LAG.observe(max(lag, 0.0))

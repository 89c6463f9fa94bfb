"""A bounded send buffer per socket, so a slow or stalled client never costs the room.

Engine.IO queues every packet for a socket in an unbounded ``asyncio.Queue``; one writer task
per socket takes whatever is queued and writes it to the transport, waiting while the
client's TCP window is shut. Emitting to a room only puts packets on these queues, so the
room never waits for its slowest member, but a client that stops reading would make its
queue grow for as long as the room talks.

Here the queue counts the bytes it holds, and a packet that would take it past the limit
disconnects the socket instead and drops what was queued for it. The client, once it reads
again, sees the connection closed, reconnects and catches up with ``since`` from the log,
which holds everything it missed. A packet put on an empty queue is always taken, so a large
catch-up answer cannot disconnect the client that asked for it.

What one socket can hold is then bounded: the queue's limit, the batch its writer took last
(at most one queue's worth) and the transport's own buffers (uvicorn pauses its writer at
64 KiB, then the kernel's socket buffers).

This module is the policy: the limit, what happens to a client past it, what a refused event is
answered. How Engine.IO and Socket.IO are made to follow it is in ``engine_hooks``.
"""

from __future__ import annotations

import logging
from typing import Any

from tomchat.live.engine_hooks import HookedEngineIO, HookedSocketIO, Refusal, SendQueue, frame_size

log = logging.getLogger(__name__)


class SendBuffer(SendQueue):
    """Engine.IO's per-socket packet queue, counting the bytes it holds.

    ``asyncio.Queue.put`` and ``get`` end in ``put_nowait`` and ``get_nowait``, so counting
    there sees every packet in and out.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.bytes = 0
        self.high_water = 0  # the most it ever held, for tests and diagnostics

    def put_nowait(self, item: Any) -> None:
        super().put_nowait(item)
        self.bytes += frame_size(item)
        self.high_water = max(self.high_water, self.bytes)

    def get_nowait(self) -> Any:
        item = super().get_nowait()
        self.bytes -= frame_size(item)
        return item

    def fits(self, pkt: Any) -> bool:
        return self.bytes == 0 or self.bytes + frame_size(pkt) <= self.limit

    def offer(self, pkt: Any) -> bool:
        # The publisher's fan-out calls this once per member and packet: the size is taken
        # once, and the packet goes on the queue past our ``put_nowait``, which would take
        # it again.
        size = frame_size(pkt)
        held = self.bytes
        if held and held + size > self.limit:
            return False
        SendQueue.put_nowait(self, pkt)
        self.bytes = held = held + size
        if held > self.high_water:
            self.high_water = held
        return True


class BoundedEngineIO(HookedEngineIO):
    """Engine.IO whose sockets each hold at most ``send_buffer_bytes`` waiting to be sent."""

    def __init__(self, *args: Any, send_buffer_bytes: int, **kwargs: Any) -> None:
        self.send_buffer_bytes = send_buffer_bytes
        self.overflows = 0
        super().__init__(*args, **kwargs)

    def new_send_queue(self) -> SendBuffer:
        return SendBuffer(self.send_buffer_bytes)

    async def on_overflow(self, sid: str, queue: SendQueue) -> None:
        self.overflows += 1
        dropped = queue.drop_all()
        log.warning(
            "client %s is not reading: %d packets waiting, over %d bytes; disconnecting it",
            sid,
            dropped,
            self.send_buffer_bytes,
        )
        await self.cut_off(sid)


# Our protocol sends at most one binary attachment (a voice recording); a packet announcing
# more would have the server collect frames for it without end.
MAX_ATTACHMENTS = 4
_REFUSALS: dict[Refusal, dict[str, Any]] = {
    "not_an_event": {
        "ok": False,
        "error": {"code": "bad_request", "message": "not an event this server takes"},
    },
    "too_many_attachments": {
        "ok": False,
        "error": {
            "code": "too_large",
            "message": f"at most {MAX_ATTACHMENTS} binary attachments in one event",
        },
    },
}


class BoundedAsyncServer(HookedSocketIO):
    """python-socketio's server over ``BoundedEngineIO``, refusing what is not our protocol
    with our acknowledgement shape."""

    max_attachments = MAX_ATTACHMENTS

    def __init__(self, *args: Any, send_buffer_bytes: int, **kwargs: Any) -> None:
        def engine(*args: Any, **kwargs: Any) -> BoundedEngineIO:
            return BoundedEngineIO(*args, send_buffer_bytes=send_buffer_bytes, **kwargs)

        super().__init__(*args, engine=engine, **kwargs)

    def refusal(self, reason: Refusal) -> dict[str, Any]:
        return _REFUSALS[reason]

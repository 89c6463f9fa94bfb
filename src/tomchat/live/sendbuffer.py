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
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import engineio
import engineio.packet
import socketio
from socketio import packet as socketio_packet

log = logging.getLogger(__name__)


def packet_size(pkt: Any) -> int:
    data = getattr(pkt, "data", None)
    if isinstance(data, str | bytes):
        return len(data) + 1  # the one-byte packet type in front
    return 1 if pkt is not None else 0


class SendBuffer(asyncio.Queue[Any]):
    """Engine.IO's per-socket packet queue, counting the bytes it holds.

    ``asyncio.Queue.put`` and ``get`` end in ``put_nowait`` and ``get_nowait``, so counting
    there sees every packet in and out.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0
        self.high_water = 0  # the most it ever held, for tests and diagnostics

    def put_nowait(self, item: Any) -> None:
        super().put_nowait(item)
        self.bytes += packet_size(item)
        self.high_water = max(self.high_water, self.bytes)

    def get_nowait(self) -> Any:
        item = super().get_nowait()
        self.bytes -= packet_size(item)
        return item

    def drop_all(self) -> int:
        dropped = 0
        while True:
            try:
                self.get_nowait()
            except asyncio.QueueEmpty:
                return dropped
            self.task_done()  # keeps ``join()`` (a waiting close) from hanging
            dropped += 1


def _decodable(frame: Any) -> bool:
    try:
        decoded = engineio.packet.Packet(encoded_packet=frame)
    except (ValueError, TypeError, IndexError):
        return False
    return bool(0 <= decoded.packet_type < len(engineio.packet.packet_names))


def _tolerant(websocket_class: Any) -> Any:
    """The driver's websocket, dropping frames Engine.IO cannot decode, and able to abort.

    python-engineio decodes each frame outside its error handling, so one empty frame or
    one starting with a letter ends the whole ASGI connection with a traceback.

    ``abort()`` is for a client cut off for not reading: its socket's writer is stuck in a
    send that waits for the client's TCP window, and ASGI has no way to drop a connection;
    a close frame would wait behind the same window. Aborting cancels the stuck send and
    the pending read, so Engine.IO's handler returns and the connection's task ends.
    """

    class TolerantWebSocket(websocket_class):  # type: ignore[misc]
        def __init__(self, handler: Any, server: Any) -> None:
            super().__init__(handler, server)
            self.aborted = False
            self._pending: set[asyncio.Task[Any]] = set()
            # The handler is the Engine.IO socket's bound method: let the socket find us.
            owner = getattr(handler, "__self__", None)
            if owner is not None:
                owner.tomchat_websocket = self

        async def _abortable(self, operation: Any) -> Any:
            # The task awaiting here is the one to cancel on abort: wrapping each operation
            # in a task of its own cost a task per frame sent, on every socket.
            if self.aborted:
                operation.close()
                raise ConnectionAbortedError("the connection was cut off")
            task = asyncio.current_task()
            assert task is not None
            self._pending.add(task)
            try:
                return await operation
            except asyncio.CancelledError:
                if self.aborted:
                    task.uncancel()  # this cancellation was ours, and it is handled here
                    raise ConnectionAbortedError("the connection was cut off") from None
                raise
            finally:
                self._pending.discard(task)

        async def send(self, message: Any) -> None:
            await self._abortable(super().send(message))

        async def wait(self) -> Any:
            while True:
                frame = await self._abortable(super().wait())
                if _decodable(frame):
                    return frame
                log.info("dropped a frame that is not Engine.IO")

        async def close(self) -> None:
            if not self.aborted:
                await super().close()

        def abort(self) -> None:
            self.aborted = True
            for task in list(self._pending):
                task.cancel()

    return TolerantWebSocket


class BoundedEngineIO(engineio.AsyncServer):  # type: ignore[misc]
    def __init__(self, *args: Any, send_buffer_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.send_buffer_bytes = send_buffer_bytes
        self.overflows = 0
        self._cutting: set[asyncio.Task[None]] = set()
        # A copy: the driver table is module-level, shared by every server in the process.
        self._async = {**self._async, "websocket": _tolerant(self._async["websocket"])}  # type: ignore[has-type]

    def create_queue(self, *args: Any, **kwargs: Any) -> asyncio.Queue[Any]:
        # Called with no arguments for each socket's packet queue (BaseSocket.__init__).
        if args or kwargs:
            return asyncio.Queue(*args, **kwargs)
        return SendBuffer()

    async def send_packet(self, sid: str, pkt: Any) -> None:
        socket = self.sockets.get(sid)
        buffer = getattr(socket, "queue", None)
        if (
            socket is not None
            and isinstance(buffer, SendBuffer)
            and buffer.bytes > 0
            and buffer.bytes + packet_size(pkt) > self.send_buffer_bytes
        ):
            if not (socket.closing or socket.closed):
                await self._overflow(socket, buffer)
            return
        await super().send_packet(sid, pkt)

    def send_packet_nowait(self, sid: str, pkt: Any) -> None:
        """``send_packet`` without awaiting anything: the packet goes on the socket's queue.

        Emitting to a room the usual way makes a task per member to put one packet on its
        queue; the publisher's fan-out (``tomchat.live.publisher``) puts it there directly.
        The ping-timeout check that ``send`` makes is left to Engine.IO's service task, which
        makes it for every socket anyway; a socket past its limit is cut off by a task.
        """
        socket = self.sockets.get(sid)
        if socket is None or socket.closed or socket.closing:
            return  # gone or going: send_packet would not deliver either
        buffer = socket.queue
        if (
            isinstance(buffer, SendBuffer)
            and buffer.bytes > 0
            and buffer.bytes + packet_size(pkt) > self.send_buffer_bytes
        ):
            if not getattr(socket, "tomchat_cut_off", False):
                socket.tomchat_cut_off = True
                task = asyncio.create_task(self._overflow(socket, buffer))
                self._cutting.add(task)
                task.add_done_callback(self._cutting.discard)
            return
        buffer.put_nowait(pkt)

    async def _overflow(self, socket: Any, buffer: SendBuffer) -> None:
        self.overflows += 1
        dropped = buffer.drop_all()
        log.warning(
            "client %s is not reading: %d packets waiting, over %d bytes; disconnecting it",
            socket.sid,
            dropped,
            self.send_buffer_bytes,
        )
        # abort: no CLOSE packet, it would only queue behind what the client is not
        # reading. The None tells the socket's writer to finish, and aborting the websocket
        # frees a writer stuck on the client's shut TCP window.
        await socket.close(wait=False, abort=True)
        buffer.put_nowait(None)
        websocket = getattr(socket, "tomchat_websocket", None)
        if websocket is not None:
            websocket.abort()


# Our protocol sends at most one binary attachment (a voice recording); a packet announcing
# more would have the server collect frames for it without end.
MAX_ATTACHMENTS = 4
_NOT_AN_EVENT = {
    "ok": False,
    "error": {"code": "bad_request", "message": "not an event this server takes"},
}


@dataclass(slots=True)
class _Skipping:
    remaining: int
    namespace: str
    id: Any


class BoundedAsyncServer(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's server over ``BoundedEngineIO``, hardened against packets that are
    valid Socket.IO but not our protocol, and against ones that are not valid at all.
    """

    def __init__(self, *args: Any, send_buffer_bytes: int, **kwargs: Any) -> None:
        self._send_buffer_bytes = send_buffer_bytes
        self._skipping: dict[str, _Skipping] = {}
        super().__init__(*args, **kwargs)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        skipping = self._skipping.get(eio_sid)
        if skipping is not None and isinstance(data, bytes):
            await self._skip_attachment(eio_sid, skipping)
            return
        try:
            await super()._handle_eio_message(eio_sid, data)
        except Exception as exc:
            # Undecodable junk: dropped with one line, not a traceback per packet (python-
            # engineio would log each one with its stack). The connection stays up.
            log.info("dropped a malformed packet from %s: %s", eio_sid, type(exc).__name__)
            self._binary_packet.pop(eio_sid, None)
            return
        pending = self._binary_packet.get(eio_sid)
        if pending is not None and pending.attachment_count > MAX_ATTACHMENTS:
            # Too many to hold: let them pass uncounted, then refuse the packet.
            del self._binary_packet[eio_sid]
            self._skipping[eio_sid] = _Skipping(
                pending.attachment_count - len(pending.attachments),
                pending.namespace or "/",
                pending.id,
            )

    async def _skip_attachment(self, eio_sid: str, skipping: _Skipping) -> None:
        skipping.remaining -= 1
        if skipping.remaining > 0:
            return
        del self._skipping[eio_sid]
        refusal = {
            "ok": False,
            "error": {
                "code": "too_large",
                "message": f"at most {MAX_ATTACHMENTS} binary attachments in one event",
            },
        }
        await self._refuse(eio_sid, skipping.namespace, skipping.id, refusal)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        self._skipping.pop(eio_sid, None)
        await super()._handle_eio_disconnect(eio_sid, reason)

    async def _refuse(self, eio_sid: str, namespace: str, id: Any, answer: Any) -> None:
        if id is not None and self.manager.sid_from_eio_sid(eio_sid, namespace) is not None:
            ack = self.packet_class(socketio_packet.ACK, namespace=namespace, id=id, data=[answer])
            await self._send_packet(eio_sid, ack)

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: Any, data: Any) -> None:
        # An event must be named, and not after the server's own lifecycle events: a client
        # emitting "disconnect" would otherwise run the disconnect handler on its own socket
        # (and "connect" would get no answer at all).
        named = isinstance(data, list) and data and isinstance(data[0], str)
        if named and data[0] not in self.reserved_events:
            await super()._handle_event(eio_sid, namespace, id, data)
            return
        await self._refuse(eio_sid, namespace or "/", id, _NOT_AN_EVENT)

    def _engineio_server_class(self) -> Any:
        limit = self._send_buffer_bytes

        class _Server(BoundedEngineIO):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, send_buffer_bytes=limit, **kwargs)

        return _Server

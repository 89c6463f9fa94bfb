"""Every use of python-socketio and python-engineio internals, in one place.

The live edge needs a few things the two libraries have no public way to do:

- give each socket a packet queue of ours, and refuse a packet before it is queued
  (``sendbuffer`` bounds what a client that stops reading can hold);
- put an already-encoded packet straight on a socket's queue, with no task and nothing
  awaited (the publisher's fan-out to a room);
- cut a socket off at once: no CLOSE packet, and a send stuck on the client's shut TCP
  window cancelled;
- survive websocket frames Engine.IO cannot decode, and Socket.IO packets that are junk,
  that announce endless binary attachments, or that name the server's lifecycle events;
- encode an event once into the Engine.IO packets ``emit`` would send, and list a room's
  members on this process by Engine.IO session.

Each of these leans on names the libraries do not promise to keep: underscored methods, the
per-socket ``queue``, the async driver table, packet classes. Here they sit behind three
classes and four functions, which are all the rest of tomchat uses:

``SendQueue``
    A socket's outgoing packets. Subclasses decide what fits (``fits``, ``offer``).
``HookedEngineIO``
    Engine.IO's server. Override ``new_send_queue`` and ``on_overflow``; call
    ``send_packet_nowait`` and ``cut_off``.
``HookedSocketIO``
    Socket.IO's server over a ``HookedEngineIO``, its dispatch hardened. Override
    ``refusal`` for the answers; set ``max_attachments``.
``frame_size``, ``encode_event``, ``local_members``, ``fans_out_directly``
    For the publisher's fan-out.

``UPSTREAM`` lists each upstream callable this module relies on with the parameters it
passes; tests/live/test_engine_hooks.py checks that list, and the instance attributes used,
against the installed libraries, so an upgrade that renames or reshapes one fails a test
instead of failing silently in production.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import engineio
import engineio.packet
import socketio
import socketio.packet

log = logging.getLogger(__name__)

Refusal = Literal["too_many_attachments", "not_an_event"]

# The attribute by which an Engine.IO socket finds its websocket (set by the websocket).
_WEBSOCKET = "tomchat_websocket"

#: Each upstream callable relied on, and its parameters (``self`` left out): the ones
#: overridden here must keep theirs, the ones called must take what is passed here.
UPSTREAM: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Engine.IO: each socket's queue comes from ``create_queue()`` (BaseSocket.__init__).
    ("engineio.AsyncServer.create_queue", ("args", "kwargs")),
    ("engineio.AsyncServer.send_packet", ("sid", "pkt")),
    ("engineio.async_socket.AsyncSocket.close", ("wait", "abort", "reason")),
    # The websocket is made with the socket's bound handler: how a socket finds its websocket.
    ("engineio.async_socket.AsyncSocket._websocket_handler", ("ws",)),
    ("engineio.async_drivers.asgi.WebSocket.__init__", ("handler", "server")),
    ("engineio.async_drivers.asgi.WebSocket.send", ("message",)),
    ("engineio.async_drivers.asgi.WebSocket.wait", ()),
    ("engineio.async_drivers.asgi.WebSocket.close", ()),
    ("engineio.packet.Packet.__init__", ("packet_type", "data", "encoded_packet")),
    # Socket.IO: the dispatch methods overridden, and what they call.
    ("socketio.AsyncServer._handle_eio_message", ("eio_sid", "data")),
    ("socketio.AsyncServer._handle_eio_disconnect", ("eio_sid", "reason")),
    ("socketio.AsyncServer._handle_event", ("eio_sid", "namespace", "id", "data")),
    ("socketio.AsyncServer._send_packet", ("eio_sid", "pkt")),
    ("socketio.AsyncServer._engineio_server_class", ()),
    ("socketio.AsyncManager.get_participants", ("namespace", "room")),
    ("socketio.AsyncManager.sid_from_eio_sid", ("eio_sid", "namespace")),
    (
        "socketio.packet.Packet.__init__",
        ("packet_type", "data", "namespace", "id", "binary", "encoded_packet"),
    ),
)


# -- the publisher's fan-out ---------------------------------------------------------------


def frame_size(pkt: Any) -> int:
    """The bytes an Engine.IO packet takes on a queue (None, the writer's end mark, is 0)."""
    data = getattr(pkt, "data", None)
    if isinstance(data, str | bytes):
        return len(data) + 1  # the one-byte packet type in front
    return 1 if pkt is not None else 0


def encode_event(sio: Any, name: str, payload: Any) -> list[Any]:
    """The Engine.IO packets ``sio.emit(name, payload)`` would send, encoded once."""
    encoded = sio.packet_class(socketio.packet.EVENT, namespace="/", data=[name, payload]).encode()
    return [
        engineio.packet.Packet(engineio.packet.MESSAGE, part)
        for part in (encoded if isinstance(encoded, list) else [encoded])
    ]


def local_members(sio: Any, room: str) -> Iterable[tuple[str, str]]:
    """``(sid, eio_sid)`` of each member of ``room`` connected to this process."""
    return sio.manager.get_participants("/", room)  # type: ignore[no-any-return]


def fans_out_directly(sio: Any) -> bool:
    """Whether ``sio`` delivers to rooms only in this process (python-socketio's in-memory
    manager) over a ``HookedEngineIO``: then an event may go straight on its members'
    queues. With a message-queue manager ``emit`` must publish it to the other processes."""
    return type(getattr(sio, "manager", None)) is socketio.AsyncManager and isinstance(
        getattr(sio, "eio", None), HookedEngineIO
    )


# -- Engine.IO -----------------------------------------------------------------------------


class SendQueue(asyncio.Queue[Any]):
    """A socket's outgoing Engine.IO packets.

    Engine.IO itself puts with ``put``/``put_nowait`` (pings, the upgrade's NOOP, a None
    telling the socket's writer to finish) and takes with ``get``/``get_nowait``; packets
    sent through ``HookedEngineIO`` ask ``fits`` or ``offer`` first, so a subclass can bound
    what is sent without touching Engine.IO's own traffic.
    """

    def __init__(self) -> None:
        super().__init__()
        self.overflowed = False  # refused a packet: the socket is being cut off

    def fits(self, pkt: Any) -> bool:
        """Whether ``pkt`` may be queued now."""
        return True

    def offer(self, pkt: Any) -> bool:
        """Queue ``pkt`` if it fits; whether it did."""
        self.put_nowait(pkt)
        return True

    def drop_all(self) -> int:
        """Drop everything queued; how many packets that was."""
        dropped = 0
        while True:
            try:
                self.get_nowait()
            except asyncio.QueueEmpty:
                return dropped
            self.task_done()  # keeps ``join()`` (a waiting close) from hanging
            dropped += 1


class HookedEngineIO(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's server with our queues, a send that awaits nothing, a way to cut a
    socket off, and websockets that drop undecodable frames and can be aborted.

    Hooks: ``new_send_queue`` makes each socket's queue; ``on_overflow`` runs when a queue
    refuses a packet (by default the socket is cut off).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cutting: set[asyncio.Task[None]] = set()
        # A copy: the driver table is module-level, shared by every server in the process.
        self._async = {**self._async, "websocket": _tolerant(self._async["websocket"])}  # type: ignore[has-type]

    def new_send_queue(self) -> SendQueue:
        return SendQueue()

    async def on_overflow(self, sid: str, queue: SendQueue) -> None:
        await self.cut_off(sid)

    def create_queue(self, *args: Any, **kwargs: Any) -> asyncio.Queue[Any]:
        # Called with no arguments for each socket's packet queue (BaseSocket.__init__);
        # Engine.IO's other queues take arguments.
        if args or kwargs:
            return asyncio.Queue(*args, **kwargs)
        return self.new_send_queue()

    async def send_packet(self, sid: str, pkt: Any) -> None:
        socket = self.sockets.get(sid)
        if socket is not None and not socket.queue.fits(pkt):
            if not (socket.closing or socket.closed):
                await self.on_overflow(sid, socket.queue)
            return
        await super().send_packet(sid, pkt)

    def send_packet_nowait(self, sid: str, pkt: Any) -> None:
        """``send_packet`` without awaiting anything: the packet goes on the socket's queue.

        Emitting to a room the usual way makes a task per member to put one packet on its
        queue; the publisher's fan-out puts it there directly, so this is its hot path: one
        call per member and packet. The ping-timeout check that ``send`` makes is left to
        Engine.IO's service task, which makes it for every socket anyway; a socket whose
        queue refuses the packet goes to ``on_overflow`` in a task.
        """
        socket = self.sockets.get(sid)
        if socket is None or socket.closed or socket.closing:
            return  # gone or going: send_packet would not deliver either
        queue = socket.queue
        if queue.offer(pkt) or queue.overflowed:
            return
        queue.overflowed = True
        task = asyncio.create_task(self.on_overflow(sid, queue))
        self._cutting.add(task)
        task.add_done_callback(self._cutting.discard)

    async def cut_off(self, sid: str) -> None:
        """Disconnect ``sid`` now, whatever it has not read.

        No CLOSE packet: it would only queue behind what the client is not reading. The None
        put on its queue tells the socket's writer to finish, and aborting the websocket
        frees a writer stuck on the client's shut TCP window.
        """
        socket = self.sockets.get(sid)
        if socket is None:
            return
        await socket.close(wait=False, abort=True)
        socket.queue.put_nowait(None)
        websocket = getattr(socket, _WEBSOCKET, None)
        if websocket is not None:
            websocket.abort()


def _decodable(frame: Any) -> bool:
    """Whether Engine.IO can take ``frame``, judged by its first bytes alone.

    Engine.IO's decoder runs ``json.loads`` over a text packet's whole payload unless it
    starts with a digit, as every Socket.IO packet does; a MESSAGE whose payload does not
    is no packet of ours, so it is dropped here before anything parses it.
    """
    if isinstance(frame, bytes | bytearray):
        return True  # a binary attachment (empty ones too): Engine.IO takes it as it is
    if not isinstance(frame, str) or not frame:
        return False
    kind = frame[0]
    if kind == "b":  # base64 binary (polling clients)
        return True
    if not ("0" <= kind < str(len(engineio.packet.packet_names))):
        return False
    return not (int(kind) == engineio.packet.MESSAGE and not frame[1:2].isdigit())


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
                setattr(owner, _WEBSOCKET, self)

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


# -- Socket.IO -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Skipping:
    remaining: int
    namespace: str
    id: Any
    answer: Any = None  # the ack for the skipped event; None: ``refusal(...)``


class PacketGate(Protocol):
    """Asked about each incoming packet while it is still raw text or bytes, before any
    JSON is decoded: cheap enough for a flood."""

    def admit(self, eio_sid: str, size: int) -> Any | None:
        """None lets the packet in; anything else refuses it undecoded, and is the ack it
        gets if it asked for one."""

    def forget(self, eio_sid: str) -> None:
        """The connection is gone: drop what was kept for it."""


# A Socket.IO packet's head: type, attachment count of a binary one, namespace, ack id.
_HEAD = re.compile(r"([0-6])(?:(\d{1,6})-)?(?:(/[^,]{0,200}),)?(\d{1,18})?")


class HookedSocketIO(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's server over a ``HookedEngineIO`` (made by ``engine``, called with
    Engine.IO's options), hardened against packets that are valid Socket.IO but not our
    protocol, and against ones that are not valid at all:

    - an undecodable packet is dropped with one log line, and the connection stays up;
    - a binary event announcing more than ``max_attachments`` attachments is not collected:
      its attachments pass uncounted and the event is refused;
    - an event that is unnamed, or named after a lifecycle event (``connect``,
      ``disconnect``), is refused instead of running that handler on the sender's socket.

    - with a ``gate`` set, each packet (not the attachments of one let in) is put to it
      while still raw, before Socket.IO decodes any JSON: a refused one is answered from
      its head alone (its ack id), its attachments skipped uncounted.

    A refused event that asked for an acknowledgement gets ``refusal(reason)`` as its answer
    (or the gate's).
    """

    max_attachments = 4

    def __init__(
        self, *args: Any, engine: Callable[..., HookedEngineIO] = HookedEngineIO, **kwargs: Any
    ) -> None:
        self._engine = engine  # read by _engineio_server_class, inside super().__init__
        self._skipping: dict[str, _Skipping] = {}
        self.gate: PacketGate | None = None
        super().__init__(*args, **kwargs)

    def refusal(self, reason: Refusal) -> Any:
        """The acknowledgement a refused event gets; None sends none."""
        return None

    def _engineio_server_class(self) -> Any:
        return self._engine

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        skipping = self._skipping.get(eio_sid)
        if skipping is not None and isinstance(data, bytes):
            await self._skip_attachment(eio_sid, skipping)
            return
        collecting = isinstance(data, bytes) and eio_sid in self._binary_packet
        if self.gate is not None and not collecting and isinstance(data, str | bytes):
            answer = self.gate.admit(eio_sid, len(data))
            if answer is not None:
                await self._refuse_raw(eio_sid, data, answer)
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
        if pending is not None and pending.attachment_count > self.max_attachments:
            # Too many to hold: let them pass uncounted, then refuse the packet.
            del self._binary_packet[eio_sid]
            self._skipping[eio_sid] = _Skipping(
                pending.attachment_count - len(pending.attachments),
                pending.namespace or "/",
                pending.id,
            )

    async def _refuse_raw(self, eio_sid: str, data: str | bytes, answer: Any) -> None:
        """Refuse a packet the gate turned away, reading no more of it than its head: the
        ack id it asked with, and how many attachments will follow (passed uncounted)."""
        head = _HEAD.match(data[:256]) if isinstance(data, str) else None
        if head is None or head.group(1) not in ("2", "5"):
            return  # not an event (or binary junk): nothing to answer
        namespace, ack_id = head.group(3) or "/", head.group(4)
        attachments = int(head.group(2) or 0) if head.group(1) == "5" else 0
        id = int(ack_id) if ack_id is not None else None
        if attachments > 0:
            self._skipping[eio_sid] = _Skipping(attachments, namespace, id, answer)
            return
        await self._answer(eio_sid, namespace, id, answer)

    async def _skip_attachment(self, eio_sid: str, skipping: _Skipping) -> None:
        skipping.remaining -= 1
        if skipping.remaining > 0:
            return
        del self._skipping[eio_sid]
        if skipping.answer is not None:
            await self._answer(eio_sid, skipping.namespace, skipping.id, skipping.answer)
            return
        await self._refuse(eio_sid, skipping.namespace, skipping.id, "too_many_attachments")

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        self._skipping.pop(eio_sid, None)
        if self.gate is not None:
            self.gate.forget(eio_sid)
        await super()._handle_eio_disconnect(eio_sid, reason)

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: Any, data: Any) -> None:
        named = isinstance(data, list) and data and isinstance(data[0], str)
        if named and data[0] not in self.reserved_events:
            await super()._handle_event(eio_sid, namespace, id, data)
            return
        await self._refuse(eio_sid, namespace or "/", id, "not_an_event")

    async def _refuse(self, eio_sid: str, namespace: str, id: Any, reason: Refusal) -> None:
        await self._answer(eio_sid, namespace, id, self.refusal(reason))

    async def _answer(self, eio_sid: str, namespace: str, id: Any, answer: Any) -> None:
        if (
            answer is not None
            and id is not None
            and self.manager.sid_from_eio_sid(eio_sid, namespace) is not None
        ):
            ack = self.packet_class(socketio.packet.ACK, namespace=namespace, id=id, data=[answer])
            await self._send_packet(eio_sid, ack)

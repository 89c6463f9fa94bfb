"""The Socket.IO handlers: joining rooms, posting, stopping, catching up."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import socketio
from msgspec import UNSET

from tomchat import logs, metrics
from tomchat.chat.access import RoomAccess
from tomchat.chat.conversation import Conversation
from tomchat.cluster.presence import Presence
from tomchat.domain import limits
from tomchat.domain.limits import LiveLimits
from tomchat.live.engine_hooks import HookedSocketIO
from tomchat.live.ratelimit import Limiter, RateLimited
from tomchat.live.voice_messages import VoiceMessages
from tomchat.store.rooms import RoomReader
from tomchat.wire import outgoing as wire
from tomchat.wire import payloads
from tomchat.wire.errors import answer
from tomchat.wire.incoming import (
    JoinRoom,
    LeaveRoom,
    PayloadError,
    Resync,
    SendMessage,
    SendVoiceMessage,
    StopGeneration,
    parse,
)
from tomchat.wire.payloads import OK, Ack, CatchUpAck, SendAck, SnapshotAck, to_wire

log = logging.getLogger(__name__)

Handler = Callable[[str, Any], Awaitable[Ack]]


def error(code: str, message: str, *, retry_after: float | None = None) -> dict[str, Any]:
    metrics.ERRORS.labels(code).inc()
    return to_wire(payloads.error(code, message, retry_after=retry_after))


def answered(handler: Handler) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Every failure becomes an ack with a code (``wire.errors``); nothing escapes to kill
    the connection."""

    @functools.wraps(handler)
    async def wrapper(sid: str, *args: Any) -> dict[str, Any]:
        try:
            if len(args) > 1:
                # python-socketio spreads a client's extra arguments over the handler's
                # parameters; one payload object is the whole protocol.
                raise PayloadError("bad_request", f"expected one payload, got {len(args)}")
            if args and isinstance(args[0], dict) and isinstance(args[0].get("roomId"), str):
                logs.bind(room_id=args[0]["roomId"][:200])  # this handler's JSON log lines
            return to_wire(await handler(sid, args[0] if args else None))
        except Exception as exc:
            return refusal(handler.__name__, exc)

    return wrapper


def refusal(name: str, exc: Exception) -> dict[str, Any]:
    said = answer(exc)
    if isinstance(exc, RateLimited):
        metrics.RATE_LIMITED.labels(exc.what).inc()
    if said.log == "traceback":
        log.error("%s failed", name, exc_info=exc)
    elif said.log == "line":
        log.error("%s: %s", name, exc)
    return error(said.code.code, said.message, retry_after=said.extra.get("retryAfter"))


class LiveServer:
    def __init__(
        self,
        sio: socketio.AsyncServer,
        conversation: Conversation,
        reader: RoomReader,
        voice_messages: VoiceMessages | None = None,
        *,
        access: RoomAccess | None = None,
        live_limits: LiveLimits | None = None,
        presence: Presence | None = None,
    ) -> None:
        self.sio = sio
        self.conversation = conversation
        self.reader = reader
        self.voice_messages = voice_messages
        self.access = access or RoomAccess(reader.db)
        self.limits = live_limits or LiveLimits()
        self.presence = presence or Presence()  # SharedPresence when scaled out
        self.events_limit = Limiter("requests", self.limits.events)
        self.messages_limit = Limiter("messages", self.limits.messages)
        self.voice_limit = Limiter("voice messages", self.limits.voice)
        self.joins_limit = Limiter("joins", self.limits.joins)
        # Shared with REST (``POST /api/rooms`` takes it by dependency injection).
        self.rooms_limit = Limiter("new rooms", self.limits.rooms)
        self.large_limit = Limiter("large packets", self.limits.large_packets)
        # Packets are counted raw, before decoding, where the server lets us (engine_hooks).
        self.gated = isinstance(sio, HookedSocketIO)
        if isinstance(sio, HookedSocketIO):
            sio.gate = self
        handlers: dict[str, Handler] = {
            "joinRoom": self.join_room,
            "sendMessage": self.send_message,
            "sendVoiceMessage": self.send_voice_message,
            "stopGeneration": self.stop_generation,
            "resync": self.resync,
            "leaveRoom": self.leave_room,
        }
        for name, handler in handlers.items():
            sio.on(name, answered(self._counted(handler)))
        sio.on("connect", self.connect)
        sio.on("disconnect", self.disconnect)
        sio.on("*", self.unknown)

    def _counted(self, handler: Handler) -> Handler:
        """Every packet takes a token from the connection's bucket before it is parsed: at
        the packet gate (``admit``) where the server has one, else here."""

        async def counted(sid: str, data: Any) -> Ack:
            if not self.gated:
                self.events_limit.check([sid])
            return await handler(sid, data)

        counted.__name__ = handler.__name__
        return counted

    async def join_room(self, sid: str, data: Any) -> Ack:
        p = parse(JoinRoom, data)
        username = p.username.strip()
        self.joins_limit.check([sid, username])
        await self._may_enter(sid, p.roomId, p.token)
        await self.conversation.ensure_room(p.roomId)
        # Enter the Socket.IO room before reading: every event committed after the read
        # below reaches this socket live, so nothing falls between snapshot and stream.
        await self.sio.enter_room(sid, p.roomId)
        await self.presence.join(sid, p.roomId, username)
        ack = await self._catch_up(p.roomId, p.since)
        await self.announce(p.roomId)
        return ack

    # -- the packet gate (``engine_hooks.PacketGate``): raw frames, before any decoding --

    def admit(self, eio_sid: str, size: int) -> dict[str, Any] | None:
        key = ("packets", eio_sid)
        try:
            self.events_limit.check([key])
            if size > limits.LARGE_PACKET_BYTES:
                self.large_limit.check([key])
        except RateLimited as exc:
            return refusal("packet", exc)
        return None

    def forget(self, eio_sid: str) -> None:
        for limiter in (self.events_limit, self.large_limit):
            limiter.forget(("packets", eio_sid))

    async def _may_enter(self, sid: str, room_id: str, token: str | None) -> None:
        """Refuse a join this socket may not make; a join that creates the room takes a
        token of the room-creation budget (this connection's and its address's).

        A private room's id (or a deleted one's: its access row stays) without its token, and
        an unknown id joined with an invite token, get one and the same answer: whether an id
        is private cannot be probed, and no private id is ever turned into a public room.
        """
        private = await self.access.digest_of(room_id) is not None
        if private and await self.access.allows(room_id, token):
            return
        exists = await self.reader.room(room_id) is not None
        if private or (not exists and token):
            raise PayloadError("not_found", f"no room {room_id!r} to join with this link")
        if not exists:
            self.rooms_limit.check([sid, ("address", self.address(sid))])

    def address(self, sid: str) -> str:
        """The peer's IP address (the TCP peer: a proxy's, behind one)."""
        environ = self.sio.get_environ(sid) or {}
        client = (environ.get("asgi.scope") or {}).get("client")
        return str(client[0]) if client else "unknown"

    async def resync(self, sid: str, data: Any) -> Ack:
        p = parse(Resync, data)
        username = self.presence.username(sid, p.roomId)
        if username is None:
            raise PayloadError("forbidden", "join the room before asking to resync")
        # A resync reads up to 10,000 events: it costs what a join costs.
        self.joins_limit.check([sid, username])
        return await self._catch_up(p.roomId, p.since)

    async def _catch_up(self, room_id: str, since: int | None) -> Ack:
        cap = self.limits.catch_up_bytes
        if since is not None and since >= 0:
            caught = await self.reader.catch_up(
                room_id, since, limits.CATCH_UP_MAX_EVENTS, max_chars=cap
            )
            if caught is not None and since <= caught.version:
                ack = CatchUpAck(
                    ok=True,
                    room_id=room_id,
                    version=caught.version,
                    events=[wire.raw_event(e) for e in caught.events],
                )
                # Counted in characters above; here in the bytes of the packet itself.
                if payloads.wire_size(ack) <= cap:
                    metrics.CATCH_UP_EVENTS.observe(len(caught.events))
                    return ack
        snapshot = await self.reader.snapshot(room_id, limits.SNAPSHOT_PAGE)
        metrics.CATCH_UP_EVENTS.observe(len(snapshot.messages))
        empty = SnapshotAck(
            ok=True,
            room_id=room_id,
            version=snapshot.version,
            messages=[],
            streaming=[wire.streaming(s) for s in snapshot.streaming],
            has_more=snapshot.has_more,
            # Too far behind (or ahead of) the log, or too much to send: start over.
            reset=True if since is not None else UNSET,
        )
        # The newest messages that fit in the cap; older ones are a page away over REST.
        room = cap - payloads.wire_size(empty)
        kept: list[payloads.Message] = []
        for row in reversed(snapshot.messages):
            message = wire.message(row)
            room -= payloads.wire_size(message) + 1  # and its comma
            if room < 0:
                break
            kept.append(message)
        trimmed = len(kept) < len(snapshot.messages)
        return msgspec.structs.replace(
            empty, messages=kept[::-1], has_more=snapshot.has_more or trimmed
        )

    async def send_message(self, sid: str, data: Any) -> Ack:
        p = parse(SendMessage, data)
        username = self._member(sid, p.roomId)
        self.messages_limit.check([sid, username])
        await self._room_has_space(p.roomId)
        recorded = await self.conversation.post_message(
            p.roomId, username, p.content, client_id=p.clientId
        )
        message_id = getattr(recorded.event, "message_id", "")
        return SendAck(ok=True, message_id=message_id, version=recorded.version)

    async def send_voice_message(self, sid: str, data: Any) -> Ack:
        if self.voice_messages is None:
            raise PayloadError("unavailable", "voice messages are turned off on this server")
        p = parse(SendVoiceMessage, data)
        username = self._member(sid, p.roomId)
        # Limited before the audio is decoded, stored or sent to be transcribed.
        self.voice_limit.check([sid, username])
        await self._room_has_space(p.roomId)
        return await self.voice_messages.handle(lambda room_id: self._member(sid, room_id), data)

    async def stop_generation(self, sid: str, data: Any) -> Ack:
        p = parse(StopGeneration, data)
        self._member(sid, p.roomId)
        if not await self.conversation.stop(p.roomId, p.messageId):
            raise PayloadError("not_found", f"no reply {p.messageId!r} in this room")
        return OK

    async def leave_room(self, sid: str, data: Any) -> Ack:
        p = parse(LeaveRoom, data)
        await self.sio.leave_room(sid, p.roomId)
        if await self.presence.leave(sid, p.roomId):
            await self.announce(p.roomId)
        return OK

    async def connect(self, sid: str, *_: Any) -> None:
        metrics.CONNECTED_SOCKETS.inc()

    async def disconnect(self, sid: str, *_: Any) -> None:
        metrics.CONNECTED_SOCKETS.dec()
        for limiter in (
            self.events_limit,
            self.messages_limit,
            self.voice_limit,
            self.joins_limit,
            self.rooms_limit,
        ):
            limiter.forget(sid)
        for room_id in await self.presence.drop(sid):
            await self.announce(room_id)

    async def unknown(self, event: str, sid: str, *_: Any) -> dict[str, Any]:
        try:
            if not self.gated:
                self.events_limit.check([sid])
        except RateLimited as exc:
            return refusal("unknown", exc)
        name = event[:64] if isinstance(event, str) else type(event).__name__
        return error("bad_request", f"unknown event {name!r}")

    async def _room_has_space(self, room_id: str) -> None:
        """The room's queue of messages waiting for the character is bounded."""
        # The log is the queue (user messages since the last reply started), and it is kept
        # short by this very check, so reading it whole stays cheap.
        waiting = len(await self.reader.unanswered(room_id))
        if waiting >= self.limits.waiting_messages:
            raise RateLimited(f"messages waiting for an answer in this room ({waiting})", 2.0)

    def _member(self, sid: str, room_id: str) -> str:
        username = self.presence.username(sid, room_id)
        if username is None:
            raise PayloadError("forbidden", f"join room {room_id!r} first")
        return username

    async def announce(self, room_id: str) -> None:
        """Send the room its members (of every process, when scaled out)."""
        members = await self.presence.members(room_id)
        await self.sio.emit(
            "presence", to_wire(payloads.Presence(room_id=room_id, members=members)), room=room_id
        )

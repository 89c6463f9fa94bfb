"""The Socket.IO handlers: joining rooms, posting, stopping, catching up."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import msgspec
import socketio
from msgspec import UNSET

from tomchat import logs, metrics
from tomchat.chat.access import RoomAccess
from tomchat.chat.conversation import Conversation
from tomchat.chat.identity import Admission, People, RoomRoles, TrustedProxy, canonical_name
from tomchat.chat.tree import Tree
from tomchat.cluster.presence import Presence
from tomchat.cluster.ratelimit import Limiter, PacketLimiter, RateLimited, RateLimitStores
from tomchat.domain import limits
from tomchat.domain.events import RecordedEvent, RoomCastChanged
from tomchat.domain.limits import LiveLimits
from tomchat.live.engine_hooks import HookedSocketIO
from tomchat.live.voice_messages import VoiceMessages
from tomchat.store.rooms import RoomReader
from tomchat.wire import outgoing as wire
from tomchat.wire import payloads
from tomchat.wire.errors import answer
from tomchat.wire.incoming import (
    ChooseAlternative,
    DeleteMessage,
    EditMessage,
    JoinRoom,
    KickMember,
    LeaveRoom,
    LockRoom,
    PayloadError,
    Regenerate,
    RenameRoom,
    Resync,
    SendMessage,
    SendVoiceMessage,
    SetCast,
    StopGeneration,
    Typing,
    parse,
    without_format_characters,
)
from tomchat.wire.payloads import OK, Ack, CastAck, CatchUpAck, SendAck, SnapshotAck, You, to_wire

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


def _sent(recorded: RecordedEvent) -> SendAck:
    message_id = getattr(recorded.event, "message_id", "")
    return SendAck(ok=True, message_id=message_id, version=recorded.version)


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
        people: People | None = None,
        trusted: TrustedProxy | None = None,
        rate_limits: RateLimitStores | None = None,
        tree: Tree | None = None,
        roles: RoomRoles | None = None,
    ) -> None:
        self.sio = sio
        self.tree = tree  # regenerate, choose, edit, delete (None: refused as unavailable)
        self.conversation = conversation
        self.reader = reader
        self.voice_messages = voice_messages
        self.access = access or RoomAccess(reader.db)
        self.limits = live_limits or LiveLimits()
        self.presence = presence or Presence()  # SharedPresence when scaled out
        self.people = people or People(
            reader.db,
            conversation.store,
            reader,
            lambda _room_id: _character_name(conversation),
        )
        self.trusted = trusted  # identity from a single sign-on proxy, when configured
        # Who each socket is in each room it joined: sid -> room id -> admission.
        self._admitted: dict[str, dict[str, Admission]] = {}
        self._proxy_users: dict[str, str] = {}  # sid -> the name a trusted proxy gave
        stores = rate_limits or RateLimitStores()  # shared through Redis when scaled out
        self.events_limit = Limiter("requests", self.limits.events, stores)
        self.messages_limit = Limiter("messages", self.limits.messages, stores)
        self.voice_limit = Limiter("voice messages", self.limits.voice, stores)
        self.joins_limit = Limiter("joins", self.limits.joins, stores)
        self.typing_limit = Limiter("typing", self.limits.typing, stores)
        # Who may change the cast: the room's host (this server's own is_host, unless given).
        self.roles: RoomRoles = roles or self
        # Shared with REST (``POST /api/rooms`` takes it by dependency injection).
        self.rooms_limit = Limiter("new rooms", self.limits.rooms, stores)
        # Packets are counted raw, before decoding, where the server lets us (engine_hooks):
        # synchronously, in this process's memory (a connection lives on one process).
        self.packet_limit = PacketLimiter("requests", self.limits.events)
        self.large_limit = PacketLimiter("large packets", self.limits.large_packets)
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
            "typing": self.typing,
            "kickMember": self.kick_member,
            "lockRoom": self.lock_room,
            "renameRoom": self.rename_room,
            "setCast": self.set_cast,
            "regenerate": self.regenerate,
            "chooseAlternative": self.choose_alternative,
            "editMessage": self.edit_message,
            "deleteMessage": self.delete_message,
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
                await self.events_limit.check([sid])
            return await handler(sid, data)

        counted.__name__ = handler.__name__
        return counted

    async def join_room(self, sid: str, data: Any) -> Ack:
        p = parse(JoinRoom, data)
        # Behind a trusted single sign-on proxy the proxy names the user, not the client.
        proxied = self._proxy_users.get(sid)
        username = proxied or without_format_characters(p.username).strip()
        await self.joins_limit.check([sid, username])
        await self._may_enter(sid, p.roomId, p.token)
        # A character's name is refused before a room is made for it.
        await self.people.check_name(p.roomId, username)
        created = await self.conversation.ensure_room(p.roomId)
        info = await self.reader.room(p.roomId)
        locked = info.locked if info is not None else False
        admitted = self._admitted.get(sid, {}).get(p.roomId)
        if admitted is None or admitted.name_key != canonical_name(username) or p.hostToken:
            admitted = await self.people.admit(
                p.roomId,
                username,
                member_key=p.memberKey,
                host_token=p.hostToken,
                trusted=proxied is not None,
                creator=created,
                locked=locked,
            )
        else:
            # The socket already proved the name in this room: joining again (to start over
            # from a snapshot) needs no key; nothing new is made for it.
            admitted = replace(admitted, made_key=None)
        self._admitted.setdefault(sid, {})[p.roomId] = admitted
        # Enter the Socket.IO room before reading: every event committed after the read
        # below reaches this socket live, so nothing falls between snapshot and stream.
        await self.sio.enter_room(sid, p.roomId)
        await self.presence.join(sid, p.roomId, admitted.username)
        ack = await self._catch_up(p.roomId, p.since)
        await self.announce(p.roomId)
        you = You(username=admitted.username, role=admitted.role)
        made = UNSET if admitted.made_key is None else admitted.made_key
        ack = msgspec.structs.replace(ack, you=you, member_key=made, locked=locked)
        info = await self.reader.room(p.roomId)
        if info is not None:
            ack = msgspec.structs.replace(
                ack, cast=wire.cast_items(info.cast), reply_mode=info.reply_mode
            )
        return ack

    def is_host(self, room_id: str, sid: str) -> bool:
        """True if the socket joined ``room_id`` as its host (``chat.identity.RoomRoles``)."""
        admitted = self._admitted.get(sid, {}).get(room_id)
        return admitted is not None and admitted.role == "host"

    def _host(self, sid: str, room_id: str, act: str) -> str:
        username = self._member(sid, room_id)
        if not self.is_host(room_id, sid):
            raise PayloadError("forbidden", f"only the room's host may {act}")
        return username

    async def kick_member(self, sid: str, data: Any) -> Ack:
        p = parse(KickMember, data)
        by = self._host(sid, p.roomId, "remove people")
        target = p.username.strip()
        mine = self._admitted.get(sid, {}).get(p.roomId)
        if mine is not None and mine.name_key == canonical_name(target):
            raise PayloadError("bad_request", "a host cannot remove themselves")
        name_key = await self.people.kick(p.roomId, target, by)
        told = to_wire(payloads.Kicked(room_id=p.roomId, by=by))
        for other, rooms in list(self._admitted.items()):
            admitted = rooms.get(p.roomId)
            if admitted is None or admitted.name_key != name_key:
                continue
            await self.sio.emit("kicked", told, to=other)
            await self.sio.leave_room(other, p.roomId)
            await self.presence.leave(other, p.roomId)
            rooms.pop(p.roomId, None)
        await self.announce(p.roomId)
        return OK

    async def lock_room(self, sid: str, data: Any) -> Ack:
        p = parse(LockRoom, data)
        by = self._host(sid, p.roomId, "lock the room")
        await self.people.lock(p.roomId, p.locked, by)
        return OK

    async def rename_room(self, sid: str, data: Any) -> Ack:
        p = parse(RenameRoom, data)
        by = self._host(sid, p.roomId, "rename the room")
        await self.people.rename(p.roomId, p.name.strip(), by)
        return OK

    async def set_cast(self, sid: str, data: Any) -> Ack:
        p = parse(SetCast, data)
        username = self._member(sid, p.roomId)
        if not self.roles.is_host(p.roomId, sid):
            raise PayloadError("forbidden", "only the room's host may change its cast")
        recorded = await self.conversation.set_cast(p.roomId, p.cast, p.replyMode, by=username)
        event = recorded.event
        assert isinstance(event, RoomCastChanged)
        return CastAck(
            ok=True,
            room_id=p.roomId,
            version=recorded.version,
            cast=wire.cast_items(event.cast),
            reply_mode=event.reply_mode,
        )

    # -- the packet gate (``engine_hooks.PacketGate``): raw frames, before any decoding --

    def admit(self, eio_sid: str, size: int) -> dict[str, Any] | None:
        try:
            self.packet_limit.check(eio_sid)
            if size > limits.LARGE_PACKET_BYTES:
                self.large_limit.check(eio_sid)
        except RateLimited as exc:
            return refusal("packet", exc)
        return None

    def forget(self, eio_sid: str) -> None:
        self.packet_limit.forget(eio_sid)
        self.large_limit.forget(eio_sid)

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
            await self.rooms_limit.check([sid, f"address:{self.address(sid)}"])

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
        await self.joins_limit.check([sid, username])
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
        for message in reversed(wire.messages(snapshot.messages)):
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
        await self.messages_limit.check([sid, username])
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
        await self.voice_limit.check([sid, username])
        await self._room_has_space(p.roomId)
        return await self.voice_messages.handle(lambda room_id: self._member(sid, room_id), data)

    async def stop_generation(self, sid: str, data: Any) -> Ack:
        p = parse(StopGeneration, data)
        # Anyone in the room may stop a reply; the stopped reply says who did.
        username = self._member(sid, p.roomId)
        if not await self.conversation.stop(p.roomId, p.messageId, by=username):
            raise PayloadError("not_found", f"no reply {p.messageId!r} in this room")
        return OK

    # -- the tree (chat.tree): alternatives, edits, deletions -----------------------------

    def _tree(self) -> Tree:
        if self.tree is None:
            raise PayloadError("unavailable", "this server does not edit its rooms' history")
        return self.tree

    async def regenerate(self, sid: str, data: Any) -> Ack:
        p = parse(Regenerate, data)
        username = self._member(sid, p.roomId)
        # A regeneration costs a model call, as a message does.
        await self.messages_limit.check([sid, username])
        recorded = await self._tree().regenerate(p.roomId, p.messageId)
        return _sent(recorded)

    async def choose_alternative(self, sid: str, data: Any) -> Ack:
        p = parse(ChooseAlternative, data)
        self._member(sid, p.roomId)
        return _sent(await self._tree().choose(p.roomId, p.messageId))

    async def edit_message(self, sid: str, data: Any) -> Ack:
        p = parse(EditMessage, data)
        username = self._member(sid, p.roomId)
        await self.messages_limit.check([sid, username])
        return _sent(await self._tree().edit(p.roomId, p.messageId, username, p.content))

    async def delete_message(self, sid: str, data: Any) -> Ack:
        p = parse(DeleteMessage, data)
        username = self._member(sid, p.roomId)
        as_host = self.roles.is_host(p.roomId, sid)
        recorded = await self._tree().delete(
            p.roomId, p.messageId, username, as_host=as_host, reason=p.reason
        )
        return _sent(recorded)

    async def leave_room(self, sid: str, data: Any) -> Ack:
        p = parse(LeaveRoom, data)
        await self.sio.leave_room(sid, p.roomId)
        self._admitted.get(sid, {}).pop(p.roomId, None)
        if await self.presence.leave(sid, p.roomId):
            await self.announce(p.roomId)
        return OK

    async def typing(self, sid: str, data: Any) -> Ack:
        """Pass "someone is writing" to the others in the room. Ephemeral: nothing is
        logged, nothing is versioned. Past the rate the notice is acked but not passed on:
        it is only a hint, and the writer's client has nothing to retry."""
        p = parse(Typing, data)
        username = self._member(sid, p.roomId)
        try:
            await self.typing_limit.check([sid])
        except RateLimited:
            return OK
        # skip_sid travels with the emit through the Redis manager: every process leaves
        # the writer out, and the writer's own other tabs still see it.
        await self.sio.emit(
            "typing",
            to_wire(payloads.Typing(room_id=p.roomId, username=username)),
            room=p.roomId,
            skip_sid=sid,
        )
        return OK

    async def connect(self, sid: str, environ: Any = None, *_: Any) -> None:
        metrics.CONNECTED_SOCKETS.inc()
        if self.trusted is not None and isinstance(environ, dict):
            scope = environ.get("asgi.scope") or {}
            client = scope.get("client")
            peer = client[0] if client else None
            header = "HTTP_" + self.trusted.header.upper().replace("-", "_")
            user = self.trusted.user(peer, environ.get(header))
            if user is not None:
                self._proxy_users[sid] = user

    async def disconnect(self, sid: str, *_: Any) -> None:
        metrics.CONNECTED_SOCKETS.dec()
        self._admitted.pop(sid, None)
        self._proxy_users.pop(sid, None)
        for limiter in (
            self.events_limit,
            self.messages_limit,
            self.voice_limit,
            self.joins_limit,
            self.typing_limit,
            self.rooms_limit,
        ):
            await limiter.forget(sid)
        for room_id in await self.presence.drop(sid):
            await self.announce(room_id)

    async def unknown(self, event: str, sid: str, *_: Any) -> dict[str, Any]:
        try:
            if not self.gated:
                await self.events_limit.check([sid])
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
        # Hosts as this process knows them (its own sockets).
        hosts = sorted(
            {
                rooms[room_id].username
                for rooms in self._admitted.values()
                if room_id in rooms and rooms[room_id].role == "host"
            }
        )
        await self.sio.emit(
            "presence",
            to_wire(payloads.Presence(room_id=room_id, members=members, hosts=hosts)),
            room=room_id,
        )


async def _character_name(conversation: Conversation) -> set[str]:
    """Today a room has one character, the server's: its name is reserved in every room."""
    return {conversation.character.name}

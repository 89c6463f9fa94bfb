"""A reference catch-up client over the real python-socketio client.

It follows DESIGN §2 to the letter: live events that arrive before the join ack wait, events
at or below the applied version are dropped, an event past a hole is held back, and the
transcript it rebuilds must equal the server's ``messages`` table.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import socketio

LIVE_EVENTS = (
    "message",
    "aiStart",
    "aiTextChunk",
    "aiAudio",
    "aiComplete",
    "messageEdited",
    "messageDeleted",
    "alternativeChosen",
)


@dataclass
class Line:
    id: str
    author: str
    is_ai: bool
    content: str
    status: str
    first_version: int
    audio_url: str | None = None
    edited: bool = False
    deleted: bool = False
    alternative_of: str | None = None
    chosen: bool = True


@dataclass
class RoomClient:
    url: str
    room_id: str
    username: str
    sio: socketio.AsyncClient = field(default_factory=lambda: socketio.AsyncClient())
    token: str | None = None  # a private room's invite token
    member_key: str | None = None  # the key the name is bound to (the server's, if none given)
    host_token: str | None = None
    you: dict[str, Any] = field(default_factory=dict)  # the join ack's ``you``
    version: int = -1  # -1: not joined yet
    lines: dict[str, Line] = field(default_factory=dict)
    applied: list[int] = field(default_factory=list)  # every version applied, in order
    live_received: list[int] = field(default_factory=list)
    presence: list[str] = field(default_factory=list)
    resyncs: int = 0  # holes that live events did not fill within a second
    _held: dict[int, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    _hole_timer: asyncio.Task[None] | None = None
    _joining: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self) -> None:
        for name in LIVE_EVENTS:
            self.sio.on(name, self._live_handler(name))
        self.sio.on("presence", self._on_presence)
        await self.sio.connect(self.url, transports=["websocket"], wait_timeout=10)

    async def join(self, since: int | None = None) -> dict[str, Any]:
        self._joining = True
        payload: dict[str, Any] = {"roomId": self.room_id, "username": self.username}
        if since is not None:
            payload["since"] = since
        if self.token is not None:
            payload["token"] = self.token
        if self.member_key is not None:
            payload["memberKey"] = self.member_key
        if self.host_token is not None:
            payload["hostToken"] = self.host_token
        ack = await self.sio.call("joinRoom", payload, timeout=10)
        assert ack["ok"], ack
        # Rejoins (a reconnect) must bring the key the name was bound to.
        self.member_key = ack.get("memberKey", self.member_key)
        self.you = ack.get("you", {})
        self._apply_ack(ack)
        self._joining = False
        self._drain()
        return ack

    async def send(self, content: str, client_id: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"roomId": self.room_id, "content": content}
        if client_id:
            payload["clientId"] = client_id
        return await self.sio.call("sendMessage", payload, timeout=10)  # type: ignore[no-any-return]

    async def call(self, event: str, payload: Any) -> dict[str, Any]:
        return await self.sio.call(event, payload, timeout=10)  # type: ignore[no-any-return]

    async def disconnect(self) -> None:
        if self._hole_timer is not None:
            self._hole_timer.cancel()
            self._hole_timer = None
        await self.sio.disconnect()

    async def reconnect(self) -> dict[str, Any]:
        """A new connection that resumes from the last applied version."""
        self.sio = socketio.AsyncClient()
        self._held.clear()
        await self.connect()
        return await self.join(since=self.version)

    async def wait_for(self, predicate: Any, timeout: float = 15) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

    # -- the ordering rules ------------------------------------------------------------------

    def _live_handler(self, name: str) -> Any:
        async def handle(payload: dict[str, Any]) -> None:
            if payload.get("roomId", self.room_id) != self.room_id:
                return
            self.live_received.append(payload["version"])
            self._held[payload["version"]] = (name, payload)
            if not self._joining:
                self._drain()

        return handle

    async def _on_presence(self, payload: dict[str, Any]) -> None:
        self.presence = payload["members"]
        self._changed.set()

    def _drain(self) -> None:
        for v in [v for v in self._held if v <= self.version]:
            del self._held[v]
        while (item := self._held.pop(self.version + 1, None)) is not None:
            name, payload = item
            self._apply_live(name, payload)
        self._changed.set()
        if self._held and self._hole_timer is None and not self._joining:
            self._hole_timer = asyncio.create_task(self._fill_hole())

    async def _fill_hole(self) -> None:
        """A hole that live events leave open for a second is asked for with ``resync``
        (an event committed by a process that died before publishing it never comes live)."""
        await asyncio.sleep(1)
        self._hole_timer = None
        if self._held and self.sio.connected:
            self.resyncs += 1
            with contextlib.suppress(Exception):  # the next live event tries again
                ack = await self.call("resync", {"roomId": self.room_id, "since": self.version})
                if ack.get("ok") and "events" in ack:
                    self._apply_ack(ack)
        self._drain()

    def _apply_ack(self, ack: dict[str, Any]) -> None:
        if "events" in ack:
            for event in ack["events"]:
                if event["version"] <= self.version:
                    continue
                assert event["version"] == self.version + 1, (event["version"], self.version)
                self._apply_raw(event)
            assert self.version == ack["version"]
            return
        self.lines.clear()
        for m in ack["messages"]:
            self.lines[m["id"]] = Line(
                m["id"],
                m["username"],
                m["isAI"],
                m["content"],
                m["status"],
                0,
                m["audioUrl"],
                m["edited"],
                m["deleted"],
                m["alternativeOf"],
                m["chosen"],
            )
        for s in ack["streaming"]:
            self.lines[s["messageId"]] = Line(
                s["messageId"], s["username"], True, s["content"], "streaming", s["version"]
            )
            self.lines[s["messageId"]].alternative_of = s["alternativeOf"]
        self.version = ack["version"]
        self.applied = [self.version]  # a snapshot starts the sequence afresh

    def _apply_raw(self, event: dict[str, Any]) -> None:
        data, v, kind = event["data"], event["version"], event["type"]
        if kind == "message.posted":
            self.lines[data["message_id"]] = Line(
                data["message_id"],
                data["username"],
                False,
                data["content"],
                "complete",
                v,
                data.get("audio_url"),
            )
        elif kind == "reply.started":
            self._show(data.get("alternative_of"), None)
            self.lines[data["message_id"]] = Line(
                data["message_id"], data["character"], True, "", "streaming", v
            )
            self.lines[data["message_id"]].alternative_of = data.get("alternative_of")
        elif kind == "message.imported":
            self.lines[data["message_id"]] = Line(
                data["message_id"],
                data["username"],
                data["is_ai"],
                data["content"],
                data["status"],
                v,
            )
        elif kind == "message.edited":
            line = self.lines[data["message_id"]]
            line.content, line.edited = data["content"], True
        elif kind == "message.redacted":
            line = self.lines[data["message_id"]]
            line.content, line.deleted, line.audio_url = "", True, None
        elif kind == "reply.chosen":
            self._choose(data["message_id"])
        elif kind == "reply.chunk":
            self.lines[data["message_id"]].content += data["text"]
        elif kind == "reply.audio":
            self.lines[data["message_id"]].audio_url = data["audio_url"]
        elif kind == "reply.completed":
            line = self.lines[data["message_id"]]
            line.content, line.status = data["content"], data["status"]
        self.version = v
        self.applied.append(v)

    def _apply_live(self, name: str, p: dict[str, Any]) -> None:
        v = p["version"]
        if name == "message":
            self.lines[p["id"]] = Line(
                p["id"], p["username"], False, p["content"], "complete", v, p["audioUrl"]
            )
        elif name == "aiStart":
            self._show(p["alternativeOf"], None)
            self.lines[p["messageId"]] = Line(
                p["messageId"], p["username"], True, "", "streaming", v
            )
            self.lines[p["messageId"]].alternative_of = p["alternativeOf"]
        elif name == "messageEdited":
            line = self.lines[p["messageId"]]
            line.content, line.edited = p["content"], True
        elif name == "messageDeleted":
            line = self.lines[p["messageId"]]
            line.content, line.deleted, line.audio_url = "", True, None
        elif name == "alternativeChosen":
            self._choose(p["messageId"])
        elif name == "aiTextChunk":
            self.lines[p["messageId"]].content += p["chunk"]
        elif name == "aiAudio":
            self.lines[p["messageId"]].audio_url = p["audioUrl"]
        elif name == "aiComplete":
            line = self.lines[p["id"]]
            line.content, line.status = p["content"], p["status"]
        self.version = v
        self.applied.append(v)

    def _show(self, slot: str | None, message_id: str | None) -> None:
        if slot is None:
            return
        for line in self.lines.values():
            if (line.alternative_of or line.id) == slot:
                line.chosen = line.id == message_id

    def _choose(self, message_id: str) -> None:
        line = self.lines[message_id]
        self._show(line.alternative_of or line.id, message_id)

    # -- what the tests compare --------------------------------------------------------------

    def transcript(self) -> list[tuple[str, str, bool, str, str]]:
        return [(x.id, x.author, x.is_ai, x.content, x.status) for x in self.lines.values()]

    def tree(self) -> list[tuple[str, str, str, bool, bool, str | None, bool]]:
        """The transcript with the tree's marks: edited, deleted, slot and shown."""
        return [
            (x.id, x.author, x.content, x.edited, x.deleted, x.alternative_of, x.chosen)
            for x in self.lines.values()
        ]

    def text_of(self, message_id: str) -> str:
        return self.lines[message_id].content

    def status_of(self, message_id: str) -> str | None:
        line = self.lines.get(message_id)
        return line.status if line else None

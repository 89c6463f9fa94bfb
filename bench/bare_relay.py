"""The reference: a bare python-socketio relay that persists nothing.

It speaks just enough of tomchat's protocol for the relay benchmark — ``joinRoom``,
``sendMessage``, and ``aiStart`` / ``aiTextChunk`` / ``aiComplete`` with the same payload
shapes — and streams the same stamped demo chunks at the same pace, straight to the room.
``python -m bench.bare_relay --port P --delay-ms 20 --chunks 250``.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import socketio
import uvicorn

from bench.stamped import StampedDemoModel
from tomchat.ai.protocols import ChatTurn


class BareRelay:
    def __init__(
        self, model: StampedDemoModel, redis_url: str | None = None, channel: str = "bare"
    ) -> None:
        # The same server options as tomchat's (tomchat.app.create_socketio), and the same
        # Redis manager when scaled out.
        manager = socketio.AsyncRedisManager(redis_url, channel=channel) if redis_url else None
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            client_manager=manager,
            cors_allowed_origins="*",
            max_http_buffer_size=8 * 1024 * 1024,
            ping_interval=10,
            ping_timeout=10,
        )
        self.model = model
        self.versions: dict[str, int] = {}
        self.pending: dict[str, list[str]] = {}
        self.replying: set[str] = set()
        self.members: dict[str, dict[str, str]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.sio.on("joinRoom", self.join_room)
        self.sio.on("sendMessage", self.send_message)
        self.sio.on("disconnect", self.disconnect)

    def _next(self, room: str) -> int:
        self.versions[room] = self.versions.get(room, 0) + 1
        return self.versions[room]

    async def join_room(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        room, username = data["roomId"], data["username"]
        await self.sio.enter_room(sid, room)
        self.members.setdefault(room, {})[sid] = username
        await self.sio.emit(
            "presence", {"roomId": room, "members": sorted(self.members[room].values())}, room=room
        )
        return {"ok": True, "roomId": room, "version": self.versions.get(room, 0)}

    async def disconnect(self, sid: str, *_: Any) -> None:
        for members in self.members.values():
            members.pop(sid, None)

    async def send_message(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        room, content = data["roomId"], data["content"]
        message_id = uuid.uuid4().hex
        version = self._next(room)
        username = self.members.get(room, {}).get(sid, "someone")
        await self.sio.emit(
            "message",
            {
                "id": message_id,
                "roomId": room,
                "content": content,
                "username": username,
                "timestamp": _now(),
                "isAI": False,
                "audioUrl": None,
                "status": "complete",
                "source": "text",
                "clientId": data.get("clientId"),
                "version": version,
            },
            room=room,
        )
        self.pending.setdefault(room, []).append(f"{username}: {content}")
        if room not in self.replying:
            self.replying.add(room)
            task = asyncio.create_task(self._replies(room))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return {"ok": True, "messageId": message_id, "version": version}

    async def _replies(self, room: str) -> None:
        try:
            while self.pending.get(room):
                said = self.pending.pop(room)
                await self._reply(room, [ChatTurn("user", s) for s in said])
        finally:
            self.replying.discard(room)

    async def _reply(self, room: str, turns: list[ChatTurn]) -> None:
        message_id = uuid.uuid4().hex
        started = _now()
        await self.sio.emit(
            "aiStart",
            {
                "messageId": message_id,
                "roomId": room,
                "username": "Tom",
                "timestamp": started,
                "inReplyTo": [],
                "version": self._next(room),
            },
            room=room,
        )
        texts: list[str] = []
        async for piece in self.model.stream_reply(turns):
            await self.sio.emit(
                "aiTextChunk",
                {
                    "messageId": message_id,
                    "roomId": room,
                    "chunk": piece,
                    "index": len(texts),
                    "version": self._next(room),
                },
                room=room,
            )
            texts.append(piece)
        await self.sio.emit(
            "aiComplete",
            {
                "id": message_id,
                "roomId": room,
                "content": "".join(texts),
                "username": "Tom",
                "timestamp": started,
                "isAI": True,
                "audioUrl": None,
                "status": "complete",
                "error": None,
                "version": self._next(room),
            },
            room=room,
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def create_app(
    delay_ms: int, chunks: int, redis_url: str | None = None, channel: str = "bare"
) -> Any:
    relay = BareRelay(StampedDemoModel(delay_ms, chunks), redis_url, channel)
    return socketio.ASGIApp(relay.sio, socketio_path="socket.io")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=int, default=20)
    parser.add_argument("--chunks", type=int, default=250)
    parser.add_argument("--redis-url", help="scale out: AsyncRedisManager on this Redis")
    parser.add_argument("--channel", default="bare", help="the Redis channel the processes share")
    args = parser.parse_args()
    app = create_app(args.delay_ms, args.chunks, args.redis_url, args.channel)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()

"""The REST API: rooms, transcript pages, the raw log and health."""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import JSONBody, Parameter
from litestar.status_codes import HTTP_201_CREATED

from tomchat.domain import limits
from tomchat.live import wire
from tomchat.services import Services
from tomchat.store.rooms import RoomInfo

RoomIdParam = Annotated[
    str,
    Parameter(
        pattern=limits.ROOM_ID_PATTERN,
        description="Room id: 1-64 of A-Z a-z 0-9 _ -",
        max_length=limits.MAX_ROOM_ID_CHARS,
    ),
]


class Health(msgspec.Struct):
    status: str
    database: str
    redis: str


class Room(msgspec.Struct):
    id: str
    name: str | None
    character: str | None
    version: int
    createdAt: str | None
    updatedAt: str | None
    members: int


class NewRoom(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=limits.MAX_ROOM_NAME_CHARS)]
    id: Annotated[str, msgspec.Meta(pattern=limits.ROOM_ID_PATTERN)] | None = None


class MessagePage(msgspec.Struct):
    messages: list[dict[str, Any]]
    nextBefore: int | None


class EventPage(msgspec.Struct):
    events: list[dict[str, Any]]
    next: int | None
    version: int


def services(state: State) -> Services:
    found = state.services
    assert isinstance(found, Services)
    return found


def _room(info: RoomInfo, members: int) -> Room:
    return Room(
        id=info.id,
        name=info.name,
        character=info.character,
        version=info.version,
        createdAt=wire.iso(info.created_at) if info.created_at else None,
        updatedAt=wire.iso(info.updated_at) if info.updated_at else None,
        members=members,
    )


def _members(svc: Services) -> dict[str, int]:
    return svc.live.presence.counts() if svc.live is not None else {}


@get("/api/health", tags=["health"])
async def health(state: State) -> Health:
    svc = services(state)
    database = "ok" if await svc.db.ping() else "unavailable"
    redis = "disabled" if not svc.settings.redis_url else "configured"
    return Health(status="ok" if database == "ok" else "degraded", database=database, redis=redis)


class RoomController(Controller):
    path = "/api/rooms"
    tags = ["rooms"]

    @get("/")
    async def list_rooms(self, state: State) -> list[Room]:
        svc = services(state)
        counts = _members(svc)
        return [_room(info, counts.get(info.id, 0)) for info in await svc.reader.rooms()]

    @post("/", status_code=HTTP_201_CREATED)
    async def create_room(self, state: State, data: JSONBody[NewRoom]) -> Room:
        svc = services(state)
        room_id = data.id or _slug(data.name)
        if not await svc.conversation.ensure_room(room_id, data.name):
            raise ClientException(f"room {room_id!r} exists already", status_code=409)
        info = await svc.reader.room(room_id)
        assert info is not None
        return _room(info, _members(svc).get(room_id, 0))

    @get("/{room_id:str}")
    async def get_room(self, state: State, room_id: RoomIdParam) -> Room:
        svc = services(state)
        info = await svc.reader.room(room_id)
        if info is None:
            raise NotFoundException(f"no room {room_id!r}")
        return _room(info, _members(svc).get(room_id, 0))

    @get("/{room_id:str}/messages")
    async def messages(
        self,
        state: State,
        room_id: RoomIdParam,
        before: Annotated[int | None, Parameter(ge=1, description="a room version")] = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> MessagePage:
        svc = services(state)
        if await svc.reader.room(room_id) is None:
            raise NotFoundException(f"no room {room_id!r}")
        rows, next_before = await svc.reader.page(room_id, before, limit)
        return MessagePage([wire.message(r) for r in rows], next_before)

    @get("/{room_id:str}/events")
    async def events(
        self,
        request: Request[Any, Any, Any],
        state: State,
        room_id: RoomIdParam,
        after: Annotated[int, Parameter(ge=0)] = 0,
        limit: Annotated[int, Parameter(ge=1, le=10_000)] = 1000,
    ) -> EventPage:
        svc = services(state)
        info = await svc.reader.room(room_id)
        if info is None:
            raise NotFoundException(f"no room {room_id!r}")
        found = await svc.store.read_stream(room_id, after, limit + 1)
        more = len(found) > limit
        page = found[:limit]
        return EventPage(
            [wire.raw_event(e) for e in page],
            page[-1].version if more and page else None,
            info.version,
        )


def _slug(name: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:48] or "room"
    return f"{base}-{secrets.token_hex(3)}"

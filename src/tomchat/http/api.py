"""The REST API: rooms, transcript pages, the raw log and health."""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, NotFoundException, ValidationException
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_201_CREATED

from tomchat.chat.access import RoomAccess
from tomchat.chat.conversation import Conversation
from tomchat.chat.identity import People, TrustedProxy
from tomchat.cluster.bus import Cluster
from tomchat.cluster.presence import Presence
from tomchat.cluster.ratelimit import Limiter
from tomchat.domain import limits
from tomchat.domain.events import RecordedEvent
from tomchat.http.guards import HOST_TOKEN_HEADER
from tomchat.http.memory import returning_memory
from tomchat.store.database import Database
from tomchat.store.event_store import EventStore
from tomchat.store.rooms import RoomInfo, RoomReader
from tomchat.store.transcripts import TranscriptReader
from tomchat.wire import outgoing as wire
from tomchat.wire.incoming import PayloadError, storable
from tomchat.wire.payloads import EventPage, MessagePage

NDJSON = "application/x-ndjson"
_json = msgspec.json.Encoder()

RoomIdParam = Annotated[
    str,
    PathParameter(
        pattern=limits.ROOM_ID_PATTERN,
        description="Room id: 1-64 of A-Z a-z 0-9 _ -",
        max_length=limits.MAX_ROOM_ID_CHARS,
    ),
]


class Health(msgspec.Struct):
    status: str
    database: str
    redis: str


class TokenUsage(msgspec.Struct):
    """The room's replies' token counts as their providers reported them."""

    promptTokens: int
    completionTokens: int
    repliesCounted: int


class CastMemberOut(msgspec.Struct):
    """A character of the room's cast, at the revision the room uses."""

    id: str
    name: str
    revision: int
    avatarUrl: str


class Room(msgspec.Struct):
    id: str
    name: str | None
    character: str | None
    version: int
    createdAt: str | None
    updatedAt: str | None
    members: int
    private: bool = False
    # Given by GET /api/rooms/{id} (summing it for a list would read every room's log).
    usage: TokenUsage | None = None
    cast: list[CastMemberOut] = msgspec.field(default_factory=list)
    replyMode: str = "single"


class RoomPage(msgspec.Struct):
    rooms: list[Room]
    next: str | None  # the cursor of the next page; None on the last


class CreatedRoom(Room):
    """A new room; a private one comes with its invite token, and every one with its host
    token (``joinRoom {hostToken}``, the ``X-Host-Token`` header), shown this once only."""

    token: str | None = None
    hostToken: str | None = None


class Invite(msgspec.Struct):
    """A private room's new invite token: the previous one no longer opens the room."""

    token: str


class Me(msgspec.Struct):
    """Who this request comes from, as a trusted single sign-on proxy said (null: nobody
    vouched, the client chooses its own name)."""

    username: str | None
    trustedIdentity: bool


class NewRoom(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=limits.MAX_ROOM_NAME_CHARS)]
    id: Annotated[str, msgspec.Meta(pattern=limits.ROOM_ID_PATTERN)] | None = None
    private: bool = False
    # Library ids; the server's default cast when absent.
    cast: (
        Annotated[
            list[Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]],
            msgspec.Meta(min_length=1, max_length=8),
        ]
        | None
    ) = None
    replyMode: Literal["single", "all"] = "single"

    def __post_init__(self) -> None:
        storable("name", self.name)
        if self.id is not None and not re.match(limits.ROOM_ID_STRICT, self.id):
            raise ValueError("id must be 1-64 of A-Z a-z 0-9 _ -")


def _room(info: RoomInfo, members: int, *, private: bool = False) -> Room:
    return Room(
        id=info.id,
        name=info.name,
        character=info.character,
        version=info.version,
        createdAt=wire.iso(info.created_at) if info.created_at else None,
        updatedAt=wire.iso(info.updated_at) if info.updated_at else None,
        members=members,
        private=private,
        cast=[
            CastMemberOut(m.id, m.name, m.revision, wire.avatar_url(m.id, m.revision))
            for m in info.cast
        ],
        replyMode=info.reply_mode,
    )


# The handlers' parameters named db, store, reader, conversation, access, presence, cluster
# and media are the process's services, given by dependency injection (``tomchat.app``).


@get("/api/health", tags=["health"])
async def health(db: NamedDependency[Database], cluster: NamedDependency[Cluster]) -> Health:
    database = "ok" if await db.ping() else "unavailable"
    reachable = await cluster.ping()
    redis = "disabled" if reachable is None else "ok" if reachable else "unavailable"
    healthy = database == "ok" and redis != "unavailable"
    return Health(status="ok" if healthy else "degraded", database=database, redis=redis)


@get("/api/me", tags=["rooms"])
async def me(request: Request[Any, Any, Any], trusted: NamedDependency[TrustedProxy | None]) -> Me:
    """The name a trusted single sign-on proxy gave this request, if any."""
    if trusted is None:
        return Me(username=None, trustedIdentity=False)
    peer = request.client.host if request.client else None
    return Me(
        username=trusted.user(peer, request.headers.get(trusted.header)), trustedIdentity=True
    )


class RoomController(Controller):
    path = "/api/rooms"
    tags = ["rooms"]

    @get("/")
    async def list_rooms(
        self,
        reader: NamedDependency[RoomReader],
        presence: NamedDependency[Presence],
        cursor: Annotated[
            str | None,
            QueryParameter(max_length=200, description="`next` of the previous page"),
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=limits.MAX_ROOMS_PAGE)] = limits.ROOMS_PAGE,
    ) -> RoomPage:
        """Public rooms, most recently active first, a page at a time; private rooms are
        invite-only and never listed."""
        listed, last = await reader.rooms_page(limit, _from_cursor(cursor))
        # Connections of every process when scaled out (cluster.presence.SharedPresence).
        counts = await presence.counts([info.id for info in listed])
        rooms = [_room(info, counts.get(info.id, 0)) for info in listed]
        return RoomPage(rooms=rooms, next=_to_cursor(last) if last else None)

    @post("/", status_code=HTTP_201_CREATED)
    async def create_room(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[NewRoom],
        room_creations: NamedDependency[Limiter],
        reader: NamedDependency[RoomReader],
        access: NamedDependency[RoomAccess],
        conversation: NamedDependency[Conversation],
        presence: NamedDependency[Presence],
        people: NamedDependency[People],
    ) -> CreatedRoom:
        # Every attempt counts, taken ones too: a refused id costs what a new one does.
        address = request.client.host if request.client else "unknown"
        await room_creations.check([f"address:{address}", f"address:{address}"])
        room_id = data.id or _slug(data.name)
        token: str | None = None
        cast = await conversation.resolve_cast(data.cast) if data.cast is not None else None
        mode = data.replyMode
        if data.private:
            token = await access.create_private_room(
                conversation, room_id, data.name, cast=cast, reply_mode=mode
            )
            created = token is not None
        elif await access.digest_of(room_id) is not None:
            created = False  # a private room's id (or a deleted one's) never turns public
        else:
            created = await conversation.ensure_room(room_id, data.name, cast=cast, reply_mode=mode)
        if not created:
            raise ClientException(f"room {room_id!r} exists already", status_code=409)
        info = await reader.room(room_id)
        assert info is not None
        members = (await presence.counts([room_id])).get(room_id, 0)
        room = _room(info, members, private=data.private)
        host_token = await people.new_host_token(room_id)
        return CreatedRoom(**msgspec.structs.asdict(room), token=token, hostToken=host_token)

    @get("/{room_id:str}")
    async def get_room(
        self,
        room_id: RoomIdParam,
        reader: NamedDependency[RoomReader],
        access: NamedDependency[RoomAccess],
        presence: NamedDependency[Presence],
    ) -> Room:
        info = await reader.room(room_id)
        if info is None:
            raise NotFoundException(f"no room {room_id!r}")
        # The guard has already checked the token of a private room.
        private = bool(await access.private_ids([room_id]))
        members = (await presence.counts([room_id])).get(room_id, 0)
        totals = await reader.token_totals(room_id)
        usage = TokenUsage(totals.prompt_tokens, totals.completion_tokens, totals.replies_counted)
        return msgspec.structs.replace(_room(info, members, private=private), usage=usage)

    @post("/{room_id:str}/invite", status_code=HTTP_201_CREATED)
    async def rotate_invite(
        self,
        request: Request[Any, Any, Any],
        room_id: RoomIdParam,
        access: NamedDependency[RoomAccess],
        people: NamedDependency[People],
        host_token: Annotated[
            str | None,
            HeaderParameter(
                name=HOST_TOKEN_HEADER,
                required=False,
                max_length=limits.MAX_TOKEN_CHARS,
                description="the room's host token",
            ),
        ] = None,
    ) -> Invite:
        """A new invite token for a private room, for its host; the old one stops working
        at once (REST, media, joins, replay)."""
        if not await people.host_token_matches(room_id, host_token):
            raise PayloadError("forbidden", "only the room's host may make a new invite link")
        token = await access.rotate(room_id)
        if token is None:
            raise ClientException(
                f"room {room_id!r} is public: it has no invite token", status_code=409
            )
        return Invite(token)

    @get("/{room_id:str}/messages")
    async def messages(
        self,
        reader: NamedDependency[RoomReader],
        room_id: RoomIdParam,
        before: Annotated[
            int | None, QueryParameter(ge=1, le=limits.MAX_VERSION, description="a room version")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> MessagePage:
        if await reader.room(room_id) is None:
            raise NotFoundException(f"no room {room_id!r}")
        rows, next_before = await reader.page(room_id, before, limit)
        return MessagePage(wire.messages(rows), next_before)

    @get("/{room_id:str}/events")
    async def events(
        self,
        request: Request[Any, Any, Any],
        db: NamedDependency[Database],
        store: NamedDependency[EventStore],
        reader: NamedDependency[RoomReader],
        room_id: RoomIdParam,
        after: Annotated[int, QueryParameter(ge=0, le=limits.MAX_VERSION)] = 0,
        limit: Annotated[
            int | None,
            QueryParameter(ge=1, le=10_000, description="page size (JSON: 1000 if not given)"),
        ] = None,
    ) -> EventPage | Stream:
        """The raw log after version ``after``: a JSON page with the next cursor, or with
        ``Accept: application/x-ndjson`` every event to the room's current head, one a line
        (at most ``limit`` if given)."""
        info = await reader.room(room_id)
        if info is None:
            raise NotFoundException(f"no room {room_id!r}")
        if request.accept.best_match(["application/json", NDJSON]) == NDJSON:
            upto = info.version if limit is None else min(info.version, after + limit)
            # Small pages: a client that stops reading pins one page and its bytes.
            pages = TranscriptReader(db).event_pages(room_id, after, upto=upto, page_size=200)
            # Litestar prefers the handler's JSON media type to the Stream's: say it outright.
            return Stream(
                returning_memory(_ndjson(pages)),
                media_type=NDJSON,
                headers={"Content-Type": NDJSON},
            )
        size = limit or 1000
        found = await store.read_stream(room_id, after, size + 1)
        more = len(found) > size
        page = found[:size]
        return EventPage(
            [wire.raw_event(e) for e in page],
            page[-1].version if more and page else None,
            info.version,
        )


async def _ndjson(pages: AsyncIterable[list[RecordedEvent]]) -> AsyncIterator[bytes]:
    async for page in pages:
        piece = b"".join(_json.encode(wire.raw_event(e)) + b"\n" for e in page)
        del page  # a reader that stalls on this piece pins its bytes, not its events too
        yield piece


def _to_cursor(key: tuple[datetime, str]) -> str:
    # Opaque to clients: what it holds may change without a change of the API.
    raw = _json.encode([key[0].isoformat(), key[1]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _from_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, room_id = msgspec.json.decode(raw, type=tuple[str, str])
        key = (datetime.fromisoformat(at), room_id)
    except (ValueError, msgspec.DecodeError):
        raise ValidationException("cursor is not one this server gave") from None
    if key[0].tzinfo is None or not re.match(limits.ROOM_ID_STRICT, room_id):
        raise ValidationException("cursor is not one this server gave")
    return key


def _slug(name: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:48] or "room"
    return f"{base}-{secrets.token_hex(3)}"

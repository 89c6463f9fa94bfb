"""``POST /api/rooms/{roomId}/fork``: a new room from another's visible transcript at a version
(``chat.tree``)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import JSONBody
from litestar.status_codes import HTTP_201_CREATED

from tomchat.chat.tree import Tree
from tomchat.cluster.presence import Presence
from tomchat.domain import limits
from tomchat.http.api import CreatedRoom, RoomIdParam, _room, _slug
from tomchat.store.rooms import RoomReader
from tomchat.wire.incoming import storable


class ForkRequest(msgspec.Struct, forbid_unknown_fields=True):
    at: Annotated[int, msgspec.Meta(ge=1, le=limits.MAX_VERSION)] | None = None
    name: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=limits.MAX_ROOM_NAME_CHARS)] | None
    ) = None
    private: bool = False
    # Instead of ``at``: fork just after this message was whole (a reply's completion).
    messageId: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None

    def __post_init__(self) -> None:
        storable("name", self.name)
        storable("messageId", self.messageId)
        if self.at is not None and self.messageId is not None:
            raise ValueError("give at or messageId, not both")


@post(
    "/api/rooms/{room_id:str}/fork",
    tags=["rooms"],
    status_code=HTTP_201_CREATED,
    summary="Fork the room at a version",
    description=(
        "A new room whose log begins with `room.forked` and one `message.imported` per message "
        "visible at version `at` (the room's head if left out): chosen alternatives only, "
        "nothing deleted, original authors and times. A private fork answers its invite token "
        "once."
    ),
)
async def fork_room(
    room_id: RoomIdParam,
    tree: NamedDependency[Tree],
    reader: NamedDependency[RoomReader],
    presence: NamedDependency[Presence],
    data: JSONBody[ForkRequest | None] = None,
) -> CreatedRoom:
    body = data or ForkRequest()
    source = await reader.room(room_id)
    if source is None:
        raise NotFoundException(f"no room {room_id!r}")
    if body.at is not None and body.at > source.version:
        raise ValidationException(f"the room is at version {source.version}, not {body.at}")
    at = body.at
    if body.messageId is not None:
        at = await tree.version_of(room_id, body.messageId)
        if at is None:
            raise NotFoundException(f"no message {body.messageId!r} in room {room_id!r}")
    name = body.name or f"{source.name or room_id} (fork)"
    forked = await tree.fork(room_id, at, _slug(name), name, private=body.private)
    if forked is None:
        raise NotFoundException(f"no room {room_id!r}")
    info = await reader.room(forked.room_id)
    assert info is not None
    members = (await presence.counts([forked.room_id])).get(forked.room_id, 0)
    room = _room(info, members, private=body.private)
    return CreatedRoom(**msgspec.structs.asdict(room), token=forked.token)

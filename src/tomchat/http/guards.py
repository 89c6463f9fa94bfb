"""The REST side of private rooms: every route with a ``room_id`` or a media ``name``.

Guards run for every route of the app, so a route added later is covered without asking:
anything under a ``room_id`` path parameter of a private room needs its token, in the
``X-Room-Token`` header or the ``token`` query parameter. Without it the answer is the 404 a
missing room gets, word for word, so private room ids cannot be probed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotFoundException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import HeaderParameter, QueryParameter

from tomchat.chat.access import TOKEN_HEADER, TOKEN_QUERY, RoomAccess
from tomchat.chat.identity import People
from tomchat.domain import limits

# Declared on the layers that carry rooms, so OpenAPI documents the token (and validates its
# length) everywhere; the guards read it from the connection themselves.
TOKEN_PARAMETERS: dict[str, Any] = {
    "room_token_header": HeaderParameter(
        annotation=str | None,
        name=TOKEN_HEADER,
        required=False,
        max_length=limits.MAX_TOKEN_CHARS,
        description="a private room's invite token",
    ),
    "room_token_query": QueryParameter(
        annotation=str | None,
        name=TOKEN_QUERY,
        required=False,
        max_length=limits.MAX_TOKEN_CHARS,
        description="a private room's invite token (where a header cannot be set)",
    ),
}


def token_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get(TOKEN_HEADER)
    query = connection.query_params.get(TOKEN_QUERY)
    token = header or (query if isinstance(query, str) else None) or None
    if token is not None and len(token) > limits.MAX_TOKEN_CHARS:
        raise ValidationException(f"a room token is at most {limits.MAX_TOKEN_CHARS} characters")
    return token


Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


HOST_TOKEN_HEADER = "X-Host-Token"


def host_token_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    token = connection.headers.get(HOST_TOKEN_HEADER) or None
    if token is not None and len(token) > limits.MAX_TOKEN_CHARS:
        raise ValidationException(f"a host token is at most {limits.MAX_TOKEN_CHARS} characters")
    return token


def room_guard(access: RoomAccess, people: People | None = None) -> Guard:
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        room_id = connection.path_params.get("room_id")
        if not isinstance(room_id, str):
            return
        if await access.allows(room_id, token_of(connection)):
            return
        # The host opens their room with the host token too (it can make a new invite).
        host_token = host_token_of(connection)
        if people is not None and await people.host_token_matches(room_id, host_token):
            return
        raise NotFoundException(f"no room {room_id!r}")

    return guard


def media_guard(access: RoomAccess) -> Guard:
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        name = connection.path_params.get("name")
        if not isinstance(name, str):
            return
        if not await access.allows_media(name, token_of(connection)):
            raise NotFoundException(f"no media named {name!r}")

    return guard

"""``GET /api/rooms/{roomId}/replay``: the room's log as Server-Sent Events, at its own pace.

One SSE event per logged event: ``id`` is the room version, ``data`` the raw event
(``{version, type, data, recordedAt}``, as ``/events`` gives it), sent after the original
gap divided by ``speed``, each pause capped at ``maxPause``. The replay runs to the room's
head when it began, then sends ``event: end``. A client that reconnects sends
``Last-Event-ID`` and continues after that version; browsers' ``EventSource`` does so by
itself, and would start over after ``end`` too, so clients close on ``end``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Request, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import Stream

from tomchat.chat.access import RoomAccess
from tomchat.domain.limits import MAX_VERSION
from tomchat.domain.pacing import KeepAlive, paced
from tomchat.http.api import RoomIdParam
from tomchat.http.guards import token_of
from tomchat.store.database import Database
from tomchat.store.transcripts import TranscriptReader
from tomchat.wire import outgoing as wire

# Proxies and browsers drop a connection that stays silent for long; a comment line every
# so often keeps it open through a long pause without adding an event.
KEEPALIVE_SECONDS = 15.0
# How soon a browser reconnects after a dropped connection (it sends Last-Event-ID then).
RETRY_MS = 1000
# How often a private room's replay checks that its token still opens the room.
REVOKE_CHECK_SECONDS = 1.0

_json = msgspec.json.Encoder()


def sse_event(data: bytes, *, event_id: int | None = None, event: str | None = None) -> bytes:
    # ``data`` is compact JSON, one line: no need to split it into several data fields.
    head = b""
    if event_id is not None:
        head += b"id: %d\n" % event_id
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


def parse_last_event_id(raw: str | None) -> int | None:
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    # isascii: int() refuses some of what isdigit() takes ("²"); the bound keeps SQL happy.
    if not (text.isascii() and text.isdigit()) or len(text) > 16 or int(text) > MAX_VERSION:
        raise ValidationException(f"Last-Event-ID must be a room version, not {raw[:32]!r}")
    return int(text)


@get(
    "/api/rooms/{room_id:str}/replay",
    tags=["rooms"],
    summary="Replay the room's log as Server-Sent Events, paced by the original gaps",
    description=__doc__,
)
async def replay(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    access: NamedDependency[RoomAccess],
    room_id: RoomIdParam,
    speed: Annotated[float, QueryParameter(gt=0, le=1000, description="1 = original pace")] = 1.0,
    max_pause: Annotated[
        float,
        QueryParameter(name="maxPause", ge=0, le=3600, description="longest wait, in seconds"),
    ] = 2.0,
    after: Annotated[
        int, QueryParameter(ge=0, le=MAX_VERSION, description="start after this room version")
    ] = 0,
    last_event_id: Annotated[
        str | None,
        HeaderParameter(name="Last-Event-ID", description="resume after this version (wins)"),
    ] = None,
) -> Stream:
    resume = parse_last_event_id(last_event_id)
    start = resume if resume is not None else after
    reader = TranscriptReader(db)
    head = await reader.head(room_id)
    if not head:
        raise NotFoundException(f"no room {room_id!r}")
    # A private room's replay ends once its invite token is rotated away (the guard checked
    # it at the start; a replay may run for hours).
    token = token_of(request)
    private = await access.digest_of(room_id) is not None
    checked = time.monotonic()

    async def still_allowed() -> bool:
        nonlocal checked
        if not private or time.monotonic() - checked < REVOKE_CHECK_SECONDS:
            return True
        checked = time.monotonic()
        return await access.allows(room_id, token)

    async def stream() -> AsyncIterator[bytes]:
        yield b"retry: %d\n: replay of %s after version %d\n\n" % (
            RETRY_MS,
            room_id.encode(),
            start,
        )
        pages = reader.event_pages(room_id, start, upto=head)
        async for item in paced(pages, speed, max_pause, keepalive=KEEPALIVE_SECONDS):
            if not await still_allowed():
                yield sse_event(
                    _json.encode({"reason": "the invite link changed"}), event="revoked"
                )
                return
            if isinstance(item, KeepAlive):
                yield b": keep-alive\n\n"
                continue
            yield sse_event(_json.encode(wire.raw_event(item)), event_id=item.version)
        yield sse_event(_json.encode({"version": head}), event="end")

    return Stream(
        stream(),
        media_type="text/event-stream",
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            # nginx and the like would hold events back in their buffers, pauses and all.
            "X-Accel-Buffering": "no",
        },
    )

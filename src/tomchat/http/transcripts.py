"""``GET /api/rooms/{roomId}/transcript``: the whole transcript as a file, streamed."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import QueryParameter
from litestar.response import Stream

from tomchat.chat.access import RoomAccess
from tomchat.chat.export import FILE_KINDS, Format, content_disposition, render
from tomchat.http.api import RoomIdParam
from tomchat.http.guards import token_of
from tomchat.http.memory import returning_memory
from tomchat.http.replay import replay
from tomchat.store.database import Database
from tomchat.store.transcripts import STREAM_PAGE, Bound, Span, TranscriptReader, parse_bound

BOUND_HELP = (
    "a room version (messages that began at or after / at or before it) or an ISO 8601 time "
    "(naive times are UTC); inclusive"
)


def _bound(name: str, raw: str | None) -> Bound | None:
    try:
        return parse_bound(name, raw)
    except ValueError as exc:
        raise ValidationException(str(exc)) from None


@get(
    "/api/rooms/{room_id:str}/transcript",
    tags=["rooms"],
    summary="The room's transcript as a file",
    description=(
        "Built from the messages projection and streamed page by page, so any size of room "
        "exports in flat memory. `json`: room metadata and the Message list; `jsonl`: one "
        "Message per line; `markdown`: a readable document; `text`: plain lines. The export "
        "is fixed at the room's version when it began."
    ),
)
async def transcript(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    access: NamedDependency[RoomAccess],
    room_id: RoomIdParam,
    format_: Annotated[Format, QueryParameter(name="format")] = "json",
    from_: Annotated[str | None, QueryParameter(name="from", description=BOUND_HELP)] = None,
    to: Annotated[str | None, QueryParameter(description=BOUND_HELP)] = None,
) -> Stream:
    span = Span(_bound("from", from_), _bound("to", to))
    reader = TranscriptReader(db)
    summary = await reader.summary(room_id, span)
    if summary is None:
        raise NotFoundException(f"no room {room_id!r}")
    # A private room's audio links carry the token this request was let in with (the guard
    # checked it), so the saved file plays for whoever holds the invite.
    token = token_of(request) if await access.digest_of(room_id) is not None else None
    return Stream(
        returning_memory(
            render(
                format_,
                summary,
                reader.message_pages(summary, STREAM_PAGE),
                str(request.base_url),
                token,
            )
        ),
        media_type=FILE_KINDS[format_].media_type,
        headers={
            # As given: Litestar would append a second charset to a text/* media type.
            "Content-Type": FILE_KINDS[format_].media_type,
            "Content-Disposition": content_disposition(summary, format_),
        },
    )


# The app registers these in one line: the transcript file and the paced replay.
transcript_routes = [transcript, replay]

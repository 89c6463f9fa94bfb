"""``GET /media/{name}``: audio files, including ones still being written.

A reply's audio is announced as soon as its first bytes are on disk, so a request may find
the file still growing: it is then streamed to its end as the speech arrives, and a browser
starts playing before the reply has finished. A finished file is served whole, with single
byte ranges for the players (Safari's among them) that ask for them.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, Router, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Stream
from litestar.status_codes import HTTP_206_PARTIAL_CONTENT, HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE

from tomchat.chat.access import RoomAccess
from tomchat.domain.errors import TomchatError
from tomchat.http.guards import TOKEN_PARAMETERS, media_guard
from tomchat.media.files import MediaNotFound, MediaStore

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 64 * 1024
# Names are random and never reused, so a finished file never changes.
_FINISHED = {"Cache-Control": "public, max-age=31536000, immutable", "Accept-Ranges": "bytes"}
_GROWING = {"Cache-Control": "no-store"}


def media_router(access: RoomAccess) -> Router:
    @get("/{name:str}", summary="An audio file")
    async def media_file(
        name: FromPath[str], request: Request[Any, Any, Any], media: NamedDependency[MediaStore]
    ) -> Stream:
        try:
            path = media.path(name)
        except MediaNotFound:
            raise NotFoundException(f"no media named {name!r}") from None
        media_type = media.content_type(name)
        if media.is_growing(name):
            return Stream(media.follow(name), media_type=media_type, headers=_GROWING)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise NotFoundException(f"no media named {name!r}") from None
        try:
            wanted = _byte_range(request.headers.get("range"), size)
        except _Unsatisfiable:
            return Stream(
                iter(()),
                status_code=HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
                headers={"Content-Range": f"bytes */{size}"},
            )
        if wanted is None:
            return Stream(
                _read(media, name, 0, size),
                media_type=media_type,
                headers={**_FINISHED, "Content-Length": str(size)},
            )
        start, end = wanted
        return Stream(
            _read(media, name, start, end - start + 1),
            media_type=media_type,
            status_code=HTTP_206_PARTIAL_CONTENT,
            headers={
                **_FINISHED,
                "Content-Range": f"bytes {start}-{end}/{size}",
                "Content-Length": str(end - start + 1),
            },
        )

    # A private room's files need its token, as its transcript does (tomchat.http.guards).
    return Router(
        path="/media",
        route_handlers=[media_file],
        guards=[media_guard(access)],
        parameters=TOKEN_PARAMETERS,
    )


class _Unsatisfiable(TomchatError):
    pass


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=a-b`` range as (first, last) inclusive; None to send the whole file."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # several ranges or another unit: the whole file is a valid answer
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = int(last)
        if length == 0:
            raise _Unsatisfiable
        return max(size - length, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise _Unsatisfiable
    return start, end


async def _read(store: MediaStore, name: str, start: int, length: int) -> AsyncIterator[bytes]:
    with io.FileIO(store.path(name), "rb") as handle:
        handle.seek(start)
        while length > 0:
            data = handle.read(min(_CHUNK, length))
            if not data:
                return
            length -= len(data)
            yield data

"""One table from errors to what clients see: a Socket.IO ack code and an HTTP problem.

Both edges answer through :func:`answer`: ``live.server`` sends ``{ok: false, error: {code,
message, ...extra}}``, ``http`` an RFC 9457 problem with the status and title of the same
code and the message as its ``detail``. So an error means the same on both, and a new error
class is mapped once, here.
"""

from __future__ import annotations

import errno
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tomchat.domain.errors import RateLimited
from tomchat.media.files import MediaNotFound
from tomchat.store.database import StoreUnavailable
from tomchat.store.event_store import AppendConflict
from tomchat.wire.incoming import PayloadError


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """A code of the protocol, with the HTTP status and problem title that go with it."""

    code: str
    status: int
    title: str


BAD_REQUEST = ErrorCode("bad_request", 400, "Bad Request")
FORBIDDEN = ErrorCode("forbidden", 403, "Forbidden")
NOT_FOUND = ErrorCode("not_found", 404, "Not Found")
CONFLICT = ErrorCode("conflict", 409, "Conflict")
# The tree's refusals (regenerate, choose, edit, delete): each says what to do instead.
NOT_LATEST = ErrorCode("not_latest", 409, "Conflict")
BUSY = ErrorCode("busy", 409, "Conflict")
TOO_LARGE = ErrorCode("too_large", 413, "Content Too Large")
RATE_LIMITED = ErrorCode("rate_limited", 429, "Too Many Requests")
INTERNAL = ErrorCode("internal", 500, "Internal Server Error")
UNAVAILABLE = ErrorCode("unavailable", 503, "Service Unavailable")

CODES: dict[str, ErrorCode] = {
    c.code: c
    for c in (
        BAD_REQUEST,
        FORBIDDEN,
        NOT_FOUND,
        CONFLICT,
        NOT_LATEST,
        BUSY,
        TOO_LARGE,
        RATE_LIMITED,
        INTERNAL,
        UNAVAILABLE,
    )
}


@dataclass(frozen=True, slots=True)
class Answer:
    """What a client is told about one error."""

    code: ErrorCode
    message: str
    extra: dict[str, Any] = field(default_factory=dict)  # more fields of the ack / problem
    headers: dict[str, str] = field(default_factory=dict)  # HTTP only
    # How the edge logs it: not at all (the request's doing or a known state of the
    # server), one line (trouble outside the code), or with its traceback (a bug).
    log: Literal["none", "line", "traceback"] = "none"


def _payload(exc: PayloadError) -> Answer:
    # A payload error names its own code (bad_request, forbidden, too_large, ...).
    return Answer(CODES.get(exc.code, BAD_REQUEST), exc.message)


def _rate_limited(exc: RateLimited) -> Answer:
    return Answer(
        RATE_LIMITED,
        str(exc),
        extra={"retryAfter": exc.retry_after},
        headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))},
    )


def _store_unavailable(exc: StoreUnavailable) -> Answer:
    return Answer(UNAVAILABLE, f"{exc}; try again shortly")


def _media_not_found(exc: MediaNotFound) -> Answer:
    return Answer(NOT_FOUND, f"no media named {str(exc)!r}")


def _conflict(exc: AppendConflict) -> Answer:
    return Answer(CONFLICT, str(exc))


# The table. An error is answered by the entry of the nearest class in its MRO; anything
# not here is the server's own failure (``internal``), except a full or read-only disk.
ERRORS: dict[type[Exception], Callable[[Any], Answer]] = {
    PayloadError: _payload,
    RateLimited: _rate_limited,
    StoreUnavailable: _store_unavailable,
    MediaNotFound: _media_not_found,
    AppendConflict: _conflict,
}

# Errors of the disk under the database or the media folder: the server cannot take the
# request now, and will again once an operator makes room.
DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
DISK_TROUBLE = "the server's disk is full or read-only; try later"
SERVER_FAILED = "the server could not handle this request"


def answer(exc: BaseException) -> Answer:
    """What to tell the client about ``exc``."""
    for cls in type(exc).__mro__:
        translate = ERRORS.get(cls)
        if translate is not None:
            return translate(exc)
    if isinstance(exc, OSError) and exc.errno in DISK_ERRORS:
        return Answer(UNAVAILABLE, DISK_TROUBLE, log="line")
    return Answer(INTERNAL, SERVER_FAILED, log="traceback")

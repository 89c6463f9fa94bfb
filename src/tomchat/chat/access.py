"""Private rooms: invite tokens, and the one access check every edge uses.

A private room's token is a 256-bit random secret shown once, when the room is created.
Only its SHA-256 is stored, so a copy of the database lets nobody in; comparing digests with
``hmac.compare_digest`` takes the same time wherever they differ, so timing tells nothing.

The check answers the same for "no such room" and "private, wrong token" on REST (404), so
ids of private rooms cannot be discovered there. Joining by Socket.IO creates missing rooms,
so there a private room answers ``forbidden``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from tomchat.domain import limits
from tomchat.domain.events import CastMember, ReplyMode
from tomchat.media.files import MediaStore
from tomchat.store.database import Database
from tomchat.store.schema import messages, room_access

if TYPE_CHECKING:
    from tomchat.chat.conversation import Conversation

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Room-Token"
TOKEN_QUERY = "token"
_TOKEN_BYTES = 32


def new_token() -> str:
    return secrets.token_urlsafe(_TOKEN_BYTES)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_matches(token: str | None, digest: str) -> bool:
    if token is None or len(token) > limits.MAX_TOKEN_CHARS:
        # Still hash and compare, so a missing token costs what a wrong one does.
        token = ""
    return hmac.compare_digest(token_digest(token).encode(), digest.encode())


class RoomAccess:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def digest_of(self, room_id: str) -> str | None:
        """The room's token digest; None for a public (or missing) room."""
        query = select(room_access.c.token_hash).where(room_access.c.room_id == room_id)
        found: str | None = await self.db.read_short(
            lambda conn: conn.execute(query).scalar_one_or_none()
        )
        return found

    async def allows(self, room_id: str, token: str | None) -> bool:
        digest = await self.digest_of(room_id)
        return digest is None or token_matches(token, digest)

    async def media_room(self, name: str) -> str | None:
        """The room whose messages play ``name``; None if no message refers to it."""
        async with self.db.snapshot() as conn:
            result = await conn.execute(
                select(messages.c.room_id)
                .where(messages.c.audio_url == MediaStore.url(name))
                .limit(1)
            )
            found: str | None = result.scalar_one_or_none()
        return found

    async def allows_media(self, name: str, token: str | None) -> bool:
        room_id = await self.media_room(name)
        # Media no message refers to belongs to no room: its unguessable name is all that
        # protects it, as it is for every public room's media.
        return room_id is None or await self.allows(room_id, token)

    async def create_private_room(
        self,
        conversation: Conversation,
        room_id: str,
        name: str,
        *,
        cast: Sequence[CastMember] | None = None,
        reply_mode: ReplyMode = "single",
        create: Callable[[], Awaitable[bool]] | None = None,
    ) -> str | None:
        """Create a private room and return its token; None if the id is taken.

        The access row goes in before the room exists, so there is no moment when the new
        room is public: a join racing the creation either sees it private or created it
        first (then this creation fails and the row is removed again).
        """
        if await conversation.store.head(room_id):
            return None
        token = new_token()
        try:
            async with self.db.writer.begin() as conn:
                await conn.execute(
                    room_access.insert().values(
                        room_id=room_id,
                        token_hash=token_digest(token),
                        created_at=datetime.now(UTC),
                    )
                )
        except IntegrityError:
            return None  # someone else is creating it as private right now
        try:
            # ``create``: how the room begins, when not as a new room does (a fork).
            created = await (
                create()
                if create
                else conversation.ensure_room(room_id, name, cast=cast, reply_mode=reply_mode)
            )
        except BaseException:
            await self._release(room_id)
            raise
        if not created:
            await self._release(room_id)
            return None
        return token

    async def rotate(self, room_id: str) -> str | None:
        """A new invite token for a private room (the old one stops working at once, since
        every check reads the digest); None for a public room."""
        token = new_token()
        async with self.db.writer.begin() as conn:
            changed = await conn.execute(
                update(room_access)
                .where(room_access.c.room_id == room_id)
                .values(token_hash=token_digest(token))
            )
        return token if changed.rowcount else None

    async def private_ids(self, room_ids: list[str]) -> set[str]:
        if not room_ids:
            return set()
        async with self.db.snapshot() as conn:
            result = await conn.execute(
                select(room_access.c.room_id).where(room_access.c.room_id.in_(room_ids))
            )
            return set(result.scalars())

    async def _release(self, room_id: str) -> None:
        try:
            async with self.db.writer.begin() as conn:
                await conn.execute(delete(room_access).where(room_access.c.room_id == room_id))
        except Exception:
            # The id stays reserved (private, with a token nobody holds): safe, if wasteful.
            log.exception("could not release the reserved room id %r", room_id)


# -- tokens out of logs ----------------------------------------------------------------------

_TOKEN_IN_URL = re.compile(r"(?i)([?&;]token=)[^&;\s\"']*")


def redact(text: str) -> str:
    return _TOKEN_IN_URL.sub(r"\1<redacted>", text)


class RedactTokens(logging.Filter):
    """Removes ``token=`` query values from log records (uvicorn's access log prints the
    whole request line, query string included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redacted_arg(v) for k, v in record.args.items()}
        return True


def _redacted_arg(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


LOGGERS_WITH_URLS = ("uvicorn.access", "uvicorn.error", "litestar", "tomchat")


def install_log_redaction() -> None:
    for name in LOGGERS_WITH_URLS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())

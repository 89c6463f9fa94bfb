"""People: a name belongs to one person per room, and hosts run their rooms.

A name is bound, per room, to the SHA-256 of the member key that first used it; later joins
with that name need the same key. Names are compared by :func:`canonical_name`, so a name
that only looks like another (other case, full-width letters, a zero-width space, a Cyrillic
small a) is the same name. Bindings and host secrets are digests in their own tables, never in
the log: nothing here reaches ``/events``, an export or a replay.

A room's host holds its host token (answered once by ``POST /api/rooms``, or printed by
``tomchat rooms host``) or is the member key that created the room by joining it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import icu  # PyICU: Unicode's TR39 confusables data, kept by the ICU project
from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from tomchat.domain import limits
from tomchat.domain.events import MemberKicked, RoomLocked, RoomRenamed
from tomchat.store.database import Database
from tomchat.store.event_store import EventStore
from tomchat.store.rooms import RoomReader
from tomchat.store.schema import room_hosts, room_members
from tomchat.wire.incoming import PayloadError

MIN_KEY_CHARS = 16
MAX_KEY_CHARS = 128
_KEY_BYTES = 32

Role = Literal["host", "member"]

# One checker for the process: getSkeleton only reads ICU's immutable confusables table.
_spoof = icu.SpoofChecker()


def canonical_name(name: str) -> str:
    """The form two names are compared in: Unicode NFKC, case-folded, format characters
    (zero-width spaces and joiners, bidi marks: category Cf) removed, white space collapsed,
    then each confusable letter mapped to its prototype (the TR39 skeleton) and folded again
    (a skeleton may map ``0`` to ``O``)."""
    text = unicodedata.normalize("NFKC", name).casefold()
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    text = " ".join(text.split())
    skeleton: str = _spoof.getSkeleton(0, text)
    return unicodedata.normalize("NFKC", skeleton).casefold()


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _same(a: str | None, b: str | None) -> bool:
    # Constant time, so how long a refusal takes tells nothing about the digest.
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


def new_secret() -> str:
    return secrets.token_urlsafe(_KEY_BYTES)


def _trusted_key(name_key: str) -> str:
    """The binding of a name a trusted proxy vouched for. Member keys cannot contain NUL
    (``wire.incoming``), so no client can send a key with this digest."""
    return digest(f"\x00trusted-proxy\x00{name_key}")


class RoomRoles(Protocol):
    """Who may act on a room for a socket: the live edge asks it for host-only commands."""

    def is_host(self, room_id: str, sid: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Admission:
    """A join that was let in: the name as written, its canonical form, and the role."""

    username: str
    name_key: str
    key_hash: str
    role: Role
    made_key: str | None  # the key the server made, for a join that brought none


def forbidden(message: str) -> PayloadError:
    return PayloadError("forbidden", message)


class People:
    """Bindings of names to keys, hosts, and the host's acts (each logged with ``by``)."""

    def __init__(
        self,
        db: Database,
        store: EventStore,
        reader: RoomReader,
        reserved: Callable[[str], Awaitable[set[str]]],
    ) -> None:
        self.db = db
        self.store = store
        self.reader = reader
        self._reserved = reserved

    async def reserved_names(self, room_id: str) -> set[str]:
        """The names nobody may take in the room: its characters'."""
        return await self._reserved(room_id)

    async def check_name(self, room_id: str, username: str) -> str:
        """The canonical form of ``username``, refused if it is empty or a character's."""
        name_key = canonical_name(username)
        if not name_key.strip():
            raise PayloadError("bad_request", "username must contain a visible character")
        reserved = {canonical_name(n) for n in await self.reserved_names(room_id)}
        if name_key in reserved:
            raise forbidden(f"the name {username!r} belongs to the room's character")
        return name_key

    async def admit(
        self,
        room_id: str,
        username: str,
        *,
        member_key: str | None,
        host_token: str | None = None,
        trusted: bool = False,
        creator: bool = False,
        locked: bool = False,
    ) -> Admission:
        """Bind or check ``username`` in the room; raises ``forbidden`` if it is not theirs.

        ``trusted``: a proxy vouched for the name, no key needed. ``creator``: this join made
        the room, so its key becomes the host's.
        """
        name_key = await self.check_name(room_id, username)
        made_key = None
        if trusted:
            key_hash = _trusted_key(name_key)
        else:
            if member_key is None:
                made_key = member_key = new_secret()
            key_hash = digest(member_key)
        if creator:
            await self._set_host_key(room_id, key_hash)
        host = await self._host_row(room_id)
        role: Role = (
            "host"
            if host is not None
            and (
                _same(key_hash, host.key_hash)
                or (host_token is not None and _same(digest(host_token), host.token_hash))
            )
            else "member"
        )
        bound = select(room_members).where(
            room_members.c.room_id == room_id, room_members.c.name_key == name_key
        )
        barred = (
            select(room_members.c.name_key)
            .where(
                room_members.c.room_id == room_id,
                room_members.c.key_hash == key_hash,
                room_members.c.barred.is_(True),
            )
            .limit(1)
        )
        bind = room_members.insert().values(
            room_id=room_id,
            name_key=name_key,
            username=username,
            key_hash=key_hash,
            barred=False,
            created_at=datetime.now(UTC),
        )

        def bound_or_bind(conn: Connection) -> Any:
            """The name's row; or, if it is free and may be taken, bind it now (None)."""
            row = conn.execute(bound).first()
            if row is not None:
                return row
            if not trusted and conn.execute(barred).first() is not None:
                raise forbidden("you were removed from this room")
            if locked and role != "host":
                raise forbidden("the room is locked: no new names may join")
            conn.execute(bind)
            return None

        try:
            # One short write transaction (``Recorder.write_short``): looked up and bound
            # together, never holding the write lock across the event loop's turns.
            row = await self.db.write_short(bound_or_bind)
        except IntegrityError:
            # Someone bound the name a moment ago: theirs now, unless it was this very key.
            return await self.admit(
                room_id,
                username,
                member_key=member_key,
                host_token=host_token,
                trusted=trusted,
                locked=locked,
            )
        if row is not None:
            if row.barred:
                raise forbidden("you were removed from this room")
            if not _same(row.key_hash, key_hash):
                raise forbidden(f"the name {username!r} is taken in this room; choose another name")
            return Admission(row.username, name_key, key_hash, role, made_key)
        return Admission(username, name_key, key_hash, role, made_key)

    # -- hosts -----------------------------------------------------------------------------

    async def _host_row(self, room_id: str) -> Any:
        query = select(room_hosts).where(room_hosts.c.room_id == room_id)
        return await self.db.read_short(lambda conn: conn.execute(query).first())

    async def host_token_matches(self, room_id: str, token: str | None) -> bool:
        if token is None or len(token) > limits.MAX_TOKEN_CHARS:
            return False
        async with self.db.snapshot() as conn:
            result = await conn.execute(
                select(room_hosts.c.token_hash).where(room_hosts.c.room_id == room_id)
            )
            found: str | None = result.scalar_one_or_none()
        return _same(digest(token), found)

    async def new_host_token(self, room_id: str) -> str:
        """A fresh host token for the room (the previous one stops working); shown once."""
        token = new_secret()
        await self._upsert_host(room_id, token_hash=digest(token))
        return token

    async def _set_host_key(self, room_id: str, key_hash: str) -> None:
        await self._upsert_host(room_id, key_hash=key_hash)

    async def _upsert_host(self, room_id: str, **values: str) -> None:
        async with self.db.writer.begin() as conn:
            changed = await conn.execute(
                update(room_hosts).where(room_hosts.c.room_id == room_id).values(**values)
            )
            if changed.rowcount == 0:
                await conn.execute(
                    room_hosts.insert().values(
                        room_id=room_id, created_at=datetime.now(UTC), **values
                    )
                )

    # -- the host's acts ---------------------------------------------------------------------

    async def kick(self, room_id: str, username: str, by: str) -> str:
        """Bar the name and the key bound to it from the room; log ``member.kicked``. Returns
        the canonical name whose sockets must leave."""
        name_key = canonical_name(username)
        async with self.db.writer.begin() as conn:
            row = (
                await conn.execute(
                    select(room_members).where(
                        room_members.c.room_id == room_id, room_members.c.name_key == name_key
                    )
                )
            ).first()
            if row is None:
                raise PayloadError("not_found", f"nobody called {username!r} is in this room")
            # Every name that key holds in the room goes with it.
            await conn.execute(
                update(room_members)
                .where(room_members.c.room_id == room_id, room_members.c.key_hash == row.key_hash)
                .values(barred=True)
            )
        await self.store.append(room_id, [MemberKicked(username=row.username, by=by)])
        return name_key

    async def lock(self, room_id: str, locked: bool, by: str) -> int | None:
        """Lock or unlock the room; the version logged, None if it was so already."""
        info = await self.reader.room(room_id)
        if info is not None and info.locked == locked:
            return None
        [recorded] = await self.store.append(room_id, [RoomLocked(locked=locked, by=by)])
        return recorded.version

    async def rename(self, room_id: str, name: str, by: str) -> int:
        [recorded] = await self.store.append(room_id, [RoomRenamed(name=name, by=by)])
        return recorded.version


# -- identity from a trusted proxy ----------------------------------------------------------


class TrustedProxy:
    """Single sign-on in front: the proxy at one of ``networks`` says who the user is in
    ``header``. From any other address the header is ignored, so nobody can forge it by
    connecting directly."""

    def __init__(self, header: str, networks: Iterable[str]) -> None:
        self.header = header
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def trusts(self, peer: str | None) -> bool:
        if not peer:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False  # a unix socket or a test client's made-up name
        return any(address in network for network in self.networks)

    def user(self, peer: str | None, value: str | None) -> str | None:
        """The username the proxy gave, when ``peer`` is trusted and it gave a usable one."""
        if value is None or not self.trusts(peer):
            return None
        value = value.strip()
        if not value or len(value) > limits.MAX_USERNAME_CHARS or not value.isprintable():
            return None
        return value

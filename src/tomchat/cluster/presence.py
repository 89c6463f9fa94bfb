"""Who is connected to which room: ephemeral, never logged.

``Presence`` keeps this process's sockets; alone, that is everyone. ``SharedPresence`` also
records them in Redis so that every process of a deployment answers with the same members:
one hash per room whose fields are ``owner|sid`` (owner: the process) and whose values are
usernames, plus one expiring *alive* key per process. A process that dies stops refreshing
its alive key; within ``ttl`` seconds readers drop its entries, and the heartbeat of every
process with sockets in such a room announces the new member list to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from redis.asyncio import Redis

from tomchat.cluster.bus import ProcessIdentity

log = logging.getLogger(__name__)

Announce = Callable[[str], Awaitable[None]]


class Presence:
    """This process's sockets and the rooms they joined (sid -> room -> username)."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, str]] = {}

    # -- this process's sockets (the handlers' checks read these, never Redis) -------------

    def username(self, sid: str, room_id: str) -> str | None:
        return self._rooms.get(sid, {}).get(room_id)

    def local_rooms(self) -> set[str]:
        return {room_id for rooms in self._rooms.values() for room_id in rooms}

    async def join(self, sid: str, room_id: str, username: str) -> None:
        self._rooms.setdefault(sid, {})[room_id] = username

    async def leave(self, sid: str, room_id: str) -> bool:
        return self._rooms.get(sid, {}).pop(room_id, None) is not None

    async def drop(self, sid: str) -> list[str]:
        return list(self._rooms.pop(sid, {}))

    # -- everyone ---------------------------------------------------------------------------

    async def members(self, room_id: str) -> list[str]:
        return sorted({rooms[room_id] for rooms in self._rooms.values() if room_id in rooms})

    async def counts(self, room_ids: Iterable[str]) -> dict[str, int]:
        """Connections per room (a person with two tabs counts twice)."""
        wanted = set(room_ids)
        counts: dict[str, int] = {}
        for rooms in self._rooms.values():
            for room_id in rooms:
                if room_id in wanted:
                    counts[room_id] = counts.get(room_id, 0) + 1
        return counts

    async def start(self, announce: Announce) -> None:
        """``announce(room)`` tells a room its members changed without anyone here acting."""

    async def close(self) -> None:
        pass


class SharedPresence(Presence):
    """Presence across processes, in Redis."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        identity: ProcessIdentity,
        *,
        ttl: float = 15.0,
    ) -> None:
        super().__init__()
        self.redis = redis
        self.prefix = prefix
        self.owner = identity.owner
        self.ttl = ttl
        self._announce: Announce | None = None
        self._heard: dict[str, list[str]] = {}  # room -> members as last announced from here
        self._task: asyncio.Task[None] | None = None

    def _room_key(self, room_id: str) -> str:
        return f"{self.prefix}:presence:{room_id}"

    def _alive_key(self, owner: str) -> str:
        return f"{self.prefix}:alive:{owner}"

    def _field(self, sid: str) -> str:
        return f"{self.owner}|{sid}"

    # Presence must never cost anyone their room: while Redis is away, writes are logged
    # and left to the heartbeat (which puts every local entry back), reads fall back to
    # this process's sockets.

    async def join(self, sid: str, room_id: str, username: str) -> None:
        await super().join(sid, room_id, username)
        await self._write([(room_id, sid, username)])

    async def leave(self, sid: str, room_id: str) -> bool:
        left = await super().leave(sid, room_id)
        if left:
            await self._write([(room_id, sid, None)])
        return left

    async def drop(self, sid: str) -> list[str]:
        rooms = await super().drop(sid)
        await self._write([(room_id, sid, None) for room_id in rooms])
        return rooms

    async def _write(self, changes: list[tuple[str, str, str | None]]) -> None:
        if not changes:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for room_id, sid, username in changes:
                    if username is None:
                        pipe.hdel(self._room_key(room_id), self._field(sid))
                    else:
                        pipe.hset(self._room_key(room_id), self._field(sid), username)
                await pipe.execute()
        except Exception as exc:
            log.warning("could not record presence in Redis: %s", exc)

    async def members(self, room_id: str) -> list[str]:
        try:
            [entries] = await self._alive_entries([room_id])
        except Exception as exc:
            log.warning("could not read presence from Redis: %s", exc)
            return await super().members(room_id)
        return sorted(set(entries))

    async def counts(self, room_ids: Iterable[str]) -> dict[str, int]:
        rooms = list(room_ids)
        try:
            entries = await self._alive_entries(rooms)
        except Exception as exc:
            log.warning("could not read presence from Redis: %s", exc)
            return await super().counts(rooms)
        return {room_id: len(found) for room_id, found in zip(rooms, entries, strict=True) if found}

    async def _alive_entries(self, room_ids: list[str]) -> list[list[str]]:
        """Each room's usernames, one per connection, of live processes only; entries of
        processes found dead are deleted on the way."""
        if not room_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id in room_ids:
                pipe.hgetall(self._room_key(room_id))
            tables: list[dict[bytes, bytes]] = await pipe.execute()
        owners = sorted(
            {field.decode().split("|", 1)[0] for table in tables for field in table} - {self.owner}
        )
        alive = {self.owner}
        if owners:
            found = await self.redis.mget([self._alive_key(o) for o in owners])
            alive.update(o for o, v in zip(owners, found, strict=True) if v is not None)
        result: list[list[str]] = []
        dead: list[tuple[str, bytes]] = []
        for room_id, table in zip(room_ids, tables, strict=True):
            names = []
            for field, username in table.items():
                if field.decode().split("|", 1)[0] in alive:
                    names.append(username.decode())
                else:
                    dead.append((room_id, field))
            result.append(names)
        if dead:
            # A dead process never writes again (a restart is a new owner), so deleting
            # its entries cannot race with it.
            async with self.redis.pipeline(transaction=False) as pipe:
                for room_id, field in dead:
                    pipe.hdel(self._room_key(room_id), field)
                await pipe.execute()
        return result

    async def start(self, announce: Announce) -> None:
        self._announce = announce
        try:
            await self._beat()
        except Exception as exc:
            # Like the Socket.IO manager, keep trying: presence comes back with Redis.
            log.warning("presence: Redis is unreachable (%s); retrying", exc)
        if self._task is None:
            self._task = asyncio.create_task(self._heartbeat(), name="presence-heartbeat")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            async with self.redis.pipeline(transaction=False) as pipe:
                for sid, rooms in self._rooms.items():
                    for room_id in rooms:
                        pipe.hdel(self._room_key(room_id), self._field(sid))
                pipe.delete(self._alive_key(self.owner))
                await pipe.execute()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self._beat()
                await self._announce_changes()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("presence heartbeat failed: %s", exc)

    async def _beat(self) -> None:
        """Say we are alive, and put back our entries should a reader have dropped them
        while we were too slow to say so."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self._alive_key(self.owner), b"1", px=int(self.ttl * 1000))
            for sid, rooms in self._rooms.items():
                for room_id, username in rooms.items():
                    pipe.hset(self._room_key(room_id), self._field(sid), username)
            await pipe.execute()

    async def _announce_changes(self) -> None:
        """Rooms where someone elsewhere vanished (their process died) hear it from here."""
        rooms = sorted(self.local_rooms())
        for room_id in set(self._heard) - set(rooms):
            del self._heard[room_id]
        if not rooms or self._announce is None:
            return
        for room_id, entries in zip(rooms, await self._alive_entries(rooms), strict=True):
            members = sorted(set(entries))
            if self._heard.get(room_id, members) != members:
                await self._announce(room_id)
            self._heard[room_id] = members

"""Reply leases: one reply per room across every process sharing the database.

A room's reply loop holds the room's lease (a ``reply_leases`` row: owner, expiry) while it
looks at the queue and streams a reply, renewing it every third of its length. Appends made
under a lease name their owner, and the event store refuses them once the lease has passed
to someone else (``LeaseLost``), so a process that stalled past its expiry cannot write into
a reply another process has already closed.

A lease passes to another process when its owner released it, when it expired (measured by
the database's clock on PostgreSQL), or when its owner is known to be dead (same machine and
pid namespace, pid gone: see ``ProcessIdentity``). Taking a lease first locks the room's
``streams`` row, exactly as an append does: every append that saw the old owner has committed
by then and every later one sees the new owner, so the text of an orphaned reply read after
taking the lease is final. A takeover never queues behind that lock: a holder frozen inside a
write transaction would hold it until it wakes. It tries again at the watchdog's next look,
and the database ends the frozen session (idle-in-transaction timeout) well within a lease.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from tomchat.cluster.bus import ProcessIdentity
from tomchat.store.database import Database
from tomchat.store.schema import reply_leases, streams


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease held by another process, as the watchdog sees it."""

    room_id: str
    owner: str
    node: str | None
    pid: int | None
    expired: bool


class ReplyLeases:
    def __init__(self, db: Database, identity: ProcessIdentity, seconds: float = 10.0) -> None:
        self.db = db
        self.identity = identity
        self.seconds = seconds

    @property
    def owner(self) -> str:
        return self.identity.owner

    async def acquire(self, room_id: str, *, dead_owner: str | None = None) -> bool:
        """Take the room's lease if it is free, ours, expired, or held by ``dead_owner``
        (an owner the caller knows to be dead). True if this process holds it now."""
        t, recorder = reply_leases, self.db.recorder
        takeable = or_(
            t.c.owner.is_(None), t.c.owner == self.owner, t.c.expires_at < recorder.clock()
        )
        if dead_owner is not None:
            takeable = or_(takeable, t.c.owner == dead_owner)
        insert = recorder.upsert(t).values(
            room_id=room_id,
            owner=self.owner,
            node=self.identity.node,
            pid=self.identity.pid,
            expires_at=recorder.clock(self.seconds),
            stop_message_id=None,
        )
        statement = insert.on_conflict_do_update(
            index_elements=[t.c.room_id],
            set_={
                "owner": insert.excluded.owner,
                "node": insert.excluded.node,
                "pid": insert.excluded.pid,
                "expires_at": insert.excluded.expires_at,
                "stop_message_id": None,
            },
            where=takeable,
        ).returning(t.c.room_id)
        lock = recorder.heads_query([room_id], wait=False)
        exists = select(streams.c.room_id).where(streams.c.room_id == room_id)

        def take(conn: Connection) -> bool:
            # The room's write lock first: the barrier the module docstring explains, had at
            # once or not at all.
            if conn.execute(lock).first() is None and conn.execute(exists).first() is not None:
                return False  # locked by a writer now: try again later
            return conn.execute(statement).first() is not None

        try:
            return await self.db.write_short(take)
        except DBAPIError as exc:
            if recorder.lock_unavailable(exc):
                return False  # the lease row itself is locked (lock_timeout): later
            raise

    async def renew(self, room_ids: Collection[str]) -> dict[str, str | None]:
        """Extend the leases this process still holds among ``room_ids``.

        Returns each renewed room with the id of a reply some other process asked to stop
        (or None); a room missing from the answer is no longer ours.
        """
        if not room_ids:
            return {}
        t = reply_leases
        statement = (
            update(t)
            .where(t.c.owner == self.owner, t.c.room_id.in_(sorted(room_ids)))
            .values(expires_at=self.db.recorder.clock(self.seconds))
            .returning(t.c.room_id, t.c.stop_message_id)
        )

        def extend(conn: Connection) -> dict[str, str | None]:
            return {row.room_id: row.stop_message_id for row in conn.execute(statement)}

        return await self.db.write_short(extend)

    async def release(self, room_id: str) -> None:
        t = reply_leases
        statement = (
            update(t)
            .where(t.c.room_id == room_id, t.c.owner == self.owner)
            .values(owner=None, node=None, pid=None, expires_at=None, stop_message_id=None)
        )
        await self.db.write_short(lambda conn: conn.execute(statement))

    async def request_stop(self, room_id: str, message_id: str) -> bool:
        """Ask whoever holds the room's lease to stop reply ``message_id``; the owner reads
        it when it next renews. False if nobody holds the lease."""
        t = reply_leases
        statement = (
            update(t)
            .where(t.c.room_id == room_id, t.c.owner.is_not(None))
            .values(stop_message_id=message_id)
        )
        return await self.db.write_short(lambda conn: bool(conn.execute(statement).rowcount))

    async def held_elsewhere(self) -> list[Lease]:
        """Every lease other processes hold now, saying which have expired."""
        t = reply_leases
        query = select(
            t.c.room_id,
            t.c.owner,
            t.c.node,
            t.c.pid,
            (t.c.expires_at < self.db.recorder.clock()).label("expired"),
        ).where(t.c.expires_at.is_not(None), t.c.owner != self.owner)
        async with self.db.snapshot() as conn:
            rows = (await conn.execute(query)).all()
        return [Lease(r.room_id, r.owner, r.node, r.pid, bool(r.expired)) for r in rows]

    async def holder(self, room_id: str) -> str | None:
        t = reply_leases
        async with self.db.snapshot() as conn:
            result = await conn.execute(select(t.c.owner).where(t.c.room_id == room_id))
            return result.scalar_one_or_none()

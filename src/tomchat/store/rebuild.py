"""Rebuild the ``messages`` projection by replaying the whole log into a fresh table."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import MetaData, Table, except_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tomchat.store.database import Database
from tomchat.store.projection import project
from tomchat.store.reads import read_events
from tomchat.store.schema import messages, messages_table, streams

PAGE = 5000


@dataclass(frozen=True)
class RebuildReport:
    rows: int
    differences: int  # rows that differed between the old projection and the rebuilt one
    replaced: bool


async def rebuild_projections(db: Database, *, check_only: bool = False) -> RebuildReport:
    """Replay every room's events into a fresh table, compare, and (unless checking) swap.

    All in one write transaction: readers see the old rows or the new ones, never a mix.
    """
    fresh = messages_table("messages_rebuild", MetaData())
    async with db.writer.begin() as conn:
        await conn.run_sync(lambda c: fresh.drop(c, checkfirst=True))
        await conn.run_sync(fresh.create)
        rooms = (
            await conn.execute(select(streams.c.room_id).order_by(streams.c.room_id))
        ).scalars()
        for room_id in list(rooms):
            after = 0
            while page := await read_events(conn, room_id, after, limit=PAGE):
                await project(conn, page, table=fresh)
                after = page[-1].version
        differences = await _differences(conn, fresh)
        rows = (await conn.execute(select(func.count()).select_from(fresh))).scalar_one()
        if not check_only:
            await conn.execute(messages.delete())
            await conn.execute(messages.insert().from_select(list(fresh.c.keys()), select(fresh)))
        await conn.run_sync(fresh.drop)
    return RebuildReport(rows=rows, differences=differences, replaced=not check_only)


async def _differences(conn: AsyncConnection, fresh: Table) -> int:
    old, new = select(messages), select(fresh)
    missing = except_(old, new).subquery()
    extra = except_(new, old).subquery()
    counted = select(func.count()).select_from(missing)
    counted_extra = select(func.count()).select_from(extra)
    return int((await conn.execute(counted)).scalar_one()) + int(
        (await conn.execute(counted_extra)).scalar_one()
    )

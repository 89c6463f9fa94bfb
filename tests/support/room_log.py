"""A room's log read straight from the database, as a server (often another process) wrote it."""

from __future__ import annotations

from tomchat.domain.events import RecordedEvent
from tomchat.store.database import Database
from tomchat.store.event_store import read_events


async def room_log(url: str, room: str) -> list[RecordedEvent]:
    """Every event of ``room`` in the database at ``url``, in version order."""
    db = Database(url)
    try:
        async with db.snapshot() as conn:
            return await read_events(conn, room)
    finally:
        await db.dispose()

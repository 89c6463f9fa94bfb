"""Writes ``release-0.2.db``: a database as the release before casts wrote it
(``room.created {name, character}``, ``reply.started`` without ``character_id``).

Run with that release's code on the path, never with the current one (the point of the file
is the old shapes), from a checkout of the old commit::

    git archive b8d5d4b src | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/src python tests/data/make_release_0_2_db.py tests/data/release-0.2.db

The room ``before-casts`` has a greeting, a finished reply (with its audio, ending and
usage), a voice message answered, and a stopped reply. The file is committed; tests only
read copies of it.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tomchat.domain.events import (
    MessagePosted,
    NewEvent,
    ReplyAudio,
    ReplyChunk,
    ReplyCompleted,
    ReplyStarted,
    RoomCreated,
    TokenUsage,
)
from tomchat.store.database import Database
from tomchat.store.event_store import EventStore
from tomchat.store.migrate import upgrade_async

START = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


async def main(path: Path) -> None:
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_async(url)
    db = Database(url)
    store = EventStore(db)
    store.start()
    n = 0

    async def add(*events: object) -> None:
        nonlocal n
        batch = []
        for event in events:
            n += 1
            batch.append(NewEvent(event, uuid.UUID(int=1000 + n)))  # type: ignore[arg-type]
        await store.append("before-casts", batch, recorded_at=START + timedelta(seconds=n))

    await add(
        RoomCreated(name="Before casts", character="Tom"),
        ReplyStarted(message_id="g", character="Tom"),
        ReplyCompleted(message_id="g", content="Hey everyone, I'm Tom.", status="complete"),
    )
    await add(MessagePosted(message_id="u1", username="ann", content="Hi Tom", client_id="c1"))
    await add(ReplyStarted(message_id="a1", character="Tom", in_reply_to=("u1",)))
    await add(
        ReplyChunk(message_id="a1", index=0, text="Hi "),
        ReplyChunk(message_id="a1", index=1, text="ann!"),
    )
    await add(ReplyAudio(message_id="a1", audio_url="/media/a1.mp3", bytes=4170, duration_ms=1200))
    await add(
        ReplyCompleted(
            message_id="a1",
            content="Hi ann!",
            status="complete",
            finish_reason="stop",
            usage=TokenUsage(42, 3),
        )
    )
    await add(
        MessagePosted(
            message_id="u2",
            username="bob",
            content="Can you hear me?",
            source="voice",
            audio_url="/media/u2.webm",
        )
    )
    await add(ReplyStarted(message_id="a2", character="Tom", in_reply_to=("u2",)))
    await add(ReplyChunk(message_id="a2", index=0, text="Loud and "))
    await add(
        ReplyCompleted(message_id="a2", content="Loud and ", status="stopped", finish_reason=None)
    )
    await store.close()
    await db.dispose()


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.unlink(missing_ok=True)
    asyncio.run(main(target))

"""Writes ``release-0.1.db``: a database as the release before reply endings wrote it.

Run with that release's code on the path, never with the current one (the point of the file
is the old shapes), from a checkout of the old commit::

    git archive <old commit> src | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/src python tests/data/make_release_db.py tests/data/release-0.1.db

The file is committed; tests only read copies of it.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

from tomchat.domain.events import (
    MessagePosted,
    NewEvent,
    ReplyAudio,
    ReplyChunk,
    ReplyCompleted,
    ReplyStarted,
    RoomCreated,
)
from tomchat.store.database import Database
from tomchat.store.event_store import EventStore
from tomchat.store.migrate import upgrade_async


def _id(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


async def main(path: Path) -> None:
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_async(url)
    db = Database(url)
    store = EventStore(db)
    store.start()
    n = 0

    def new(event: object) -> NewEvent:
        nonlocal n
        n += 1
        return NewEvent(event, _id(n))  # type: ignore[arg-type]

    greeting = "Hey! I'm Tom."
    await store.append(
        "old-room",
        [
            new(RoomCreated(name="Old room", character="Tom")),
            new(ReplyStarted(message_id="m-greet", character="Tom")),
            new(ReplyCompleted(message_id="m-greet", content=greeting, status="complete")),
        ],
        expected_version=0,
    )
    replies = [
        ("m-1", "r-1", "complete", None, ["Hello ", "ann."]),
        ("m-2", "r-2", "stopped", None, ["I was say"]),
        ("m-3", "r-3", "failed", "The model service failed (HTTP 500)", []),
        ("m-4", "r-4", "interrupted", "the server writing this reply stopped", ["Half"]),
    ]
    for message_id, reply_id, status, error, pieces in replies:
        events = [
            new(MessagePosted(message_id=message_id, username="ann", content=f"q {message_id}")),
            new(ReplyStarted(message_id=reply_id, character="Tom", in_reply_to=(message_id,))),
        ]
        events += [
            new(ReplyChunk(message_id=reply_id, index=i, text=p)) for i, p in enumerate(pieces)
        ]
        if reply_id == "r-1":
            events.append(new(ReplyAudio(message_id=reply_id, audio_url="/media/x.mp3", bytes=417)))
        events.append(
            new(
                ReplyCompleted(
                    message_id=reply_id, content="".join(pieces), status=status, error=error
                )
            )
        )
        await store.append("old-room", events)
    await store.close()
    await db.dispose()


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.unlink(missing_ok=True)
    asyncio.run(main(target))

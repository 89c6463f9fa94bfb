"""One process of the two-process append test: many writers appending to one room at once.

``python -m tests.support.append_writer URL ROOM TAG WRITERS APPENDS`` prints ``ready``, waits
for a line on stdin (so two processes start writing together), then appends, from WRITERS
concurrent tasks, APPENDS appends each (every third one of two events) to ROOM, and prints
one line of JSON: the (message id, version) pairs each writer got, in the order it got them.
"""

from __future__ import annotations

import asyncio
import json
import sys

from tomchat.domain.events import MessagePosted
from tomchat.store.database import Database
from tomchat.store.event_store import EventStore


async def main(url: str, room: str, tag: str, writers: int, appends: int) -> None:
    db = Database(url)
    store = EventStore(db)
    store.start()

    async def writer(w: int) -> list[tuple[str, int]]:
        got: list[tuple[str, int]] = []
        for i in range(appends):
            count = 2 if i % 3 == 0 else 1
            batch = [
                MessagePosted(message_id=f"{tag}-{w}-{i}-{k}", username=tag, content=f"{i}.{k}")
                for k in range(count)
            ]
            for recorded in await store.append(room, batch):
                got.append((recorded.event.message_id, recorded.version))  # type: ignore[union-attr]
        return got

    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    try:
        results = await asyncio.gather(*(writer(w) for w in range(writers)))
    finally:
        await store.close()
        await db.dispose()
    print(json.dumps({"writers": results, "batches": store.batches_written}))


if __name__ == "__main__":
    url, room, tag, writers, appends = sys.argv[1:6]
    asyncio.run(main(url, room, tag, int(writers), int(appends)))

"""A process that commits a user message and dies (SIGKILL) before taking the room's lease,
exactly where ``Conversation.post_message`` would kick the room's reply loop.

Run as ``python -m tests.support.orphan_poster URL ROOM MESSAGE_ID TEXT``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from tomchat.domain.events import MessagePosted
from tomchat.store.database import Database
from tomchat.store.event_store import EventStore


async def main(url: str, room_id: str, message_id: str, text: str) -> None:
    store = EventStore(Database(url))
    await store.append(
        room_id, [MessagePosted(message_id=message_id, username="ghost", content=text)]
    )
    print("COMMITTED", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no lease taken, nothing cleaned up


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))

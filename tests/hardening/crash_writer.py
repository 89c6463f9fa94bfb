"""A writer to be killed: many concurrent appends to many rooms, group-committed.

Run as ``python -m tests.hardening.crash_writer URL FIRST_REQUEST [--pause-mid-batch P]``.
Request ``i`` appends ``request_size(i)`` events to room ``room_of(i)``, each event carrying
``i`` so a checker can tell which request an event came from. With ``--pause-mid-batch``
the writer, with probability P per transaction, stops inside the transaction right after
writing its events (before the heads and the commit), prints ``MIDBATCH`` and waits to be
killed, so the kill provably lands in the middle of a group commit.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import time
import uuid
from typing import Any

from sqlalchemy import event

from tomchat.domain.events import (
    Event,
    MessagePosted,
    NewEvent,
    ReplyChunk,
    ReplyCompleted,
    ReplyStarted,
)
from tomchat.store.database import Database
from tomchat.store.event_store import EventStore
from tomchat.store.recorders import SqliteRecorder

ROOMS = 12
WORKERS = 48


def room_of(i: int) -> str:
    return f"crash-{i % ROOMS}"


def request_size(i: int) -> int:
    return 1 + i % 5


def request_events(i: int) -> list[Event]:
    """1 to 5 events: a message, then the start, chunks and end of a reply to it."""
    size = request_size(i)
    message, reply = f"m{i}", f"r{i}"
    events: list[Event] = [
        MessagePosted(message_id=message, username=f"u{i % 7}", content=f"request {i}")
    ]
    if size >= 2:
        events.append(ReplyStarted(message_id=reply, character="Tom", in_reply_to=(message,)))
    for index in range(max(0, size - 3)):
        events.append(ReplyChunk(message_id=reply, index=index, text=f"{i}.{index} "))
    if size >= 3:
        text = "".join(f"{i}.{index} " for index in range(max(0, size - 3)))
        events.append(ReplyCompleted(message_id=reply, content=text, status="complete"))
    assert len(events) == size
    return events


ARMED = False  # pauses only once the writer has committed a good many requests


# Statements a batch runs after its events are written and before it commits: SQLite sets
# the heads last; PostgreSQL writes events and heads in one asyncpg statement, then the
# messages projection through SQLAlchemy (every request here posts a message).
MID_BATCH = ("UPDATE STREAMS SET VERSION", "INSERT INTO MESSAGES")


def pause(statement: str, probability: float) -> None:
    if ARMED and statement.lstrip().upper().startswith(MID_BATCH) and random.random() < probability:
        print("MIDBATCH", flush=True)
        time.sleep(120)  # inside the transaction: the parent kills us here


def install_pause(db: Database, probability: float) -> None:
    if isinstance(db.recorder, SqliteRecorder):
        # The SQLite writer runs plain SQL on its own driver connection: trace every
        # connection this process opens (readers never update streams).
        real_connect = sqlite3.connect

        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = real_connect(*args, **kwargs)
            conn.set_trace_callback(lambda sql: pause(sql, probability))
            return conn

        # SQLAlchemy's pysqlite dialect calls sqlite3.dbapi2.connect, aiosqlite sqlite3.connect.
        sqlite3.connect = connect  # type: ignore[assignment]
        sqlite3.dbapi2.connect = connect  # type: ignore[assignment]
    else:

        @event.listens_for(db.writer.sync_engine, "before_cursor_execute")
        def before(*args: Any) -> None:
            pause(str(args[2]), probability)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("first", type=int)
    parser.add_argument("--pause-mid-batch", type=float, default=0.0)
    args = parser.parse_args()
    db = Database(args.url)
    if args.pause_mid_batch:
        install_pause(db, args.pause_mid_batch)
    store = EventStore(db)
    store.start()
    counter = iter(range(args.first, sys.maxsize))
    written = 0

    async def worker() -> None:
        global ARMED
        nonlocal written
        for i in counter:
            ids = [NewEvent(e, event_id=_event_id(i, j)) for j, e in enumerate(request_events(i))]
            await store.append(room_of(i), ids)
            written += 1
            if written == 200:
                ARMED = True
                print("RUNNING", flush=True)

    await asyncio.gather(*(worker() for _ in range(WORKERS)))


def _event_id(i: int, j: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"tomchat-crash/{i}/{j}")


if __name__ == "__main__":
    asyncio.run(main())

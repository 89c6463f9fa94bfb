"""tomchat as ``tomchat serve`` runs it, with the stamped demo character.

``python -m bench.tomchat_server --port P --database-url URL --delay-ms 20 --chunks 250
[--redis-url URL --redis-prefix P]``:
the same ``create_app`` and uvicorn as ``tomchat serve``; only the chat model is swapped for
:class:`bench.stamped.StampedDemoModel`, whose chunks carry the moment they were produced.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sqlite3
import sys
import tempfile
from pathlib import Path

import uvicorn

from bench import store_trace
from bench.stamped import StampedDemoModel
from tomchat.app import create_app
from tomchat.settings import Settings
from tomchat.store.database import sqlite_path
from tomchat.store.migrate import upgrade


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--delay-ms", type=int, default=20)
    parser.add_argument("--chunks", type=int, default=250)
    parser.add_argument("--redis-url", help="scale out: the processes meet through this Redis")
    parser.add_argument("--redis-prefix", default="tomchat")
    parser.add_argument("--sqlite-sync", default="full", help="TOMCHAT_SQLITE_SYNC: full | normal")
    args = parser.parse_args()

    media = Path(tempfile.mkdtemp(prefix="tomchat-bench-media-"))
    settings = Settings.from_env(
        # The benchmark's clients open hundreds of rooms from one address in seconds.
        {"TOMCHAT_NEW_ROOMS_PER_MINUTE": "1000000", "TOMCHAT_SQLITE_SYNC": args.sqlite_sync},
        database_url=args.database_url,
        host="127.0.0.1",
        port=args.port,
        media_dir=media,
        demo_delay_ms=args.delay_ms,
        redis_url=args.redis_url,
        redis_prefix=args.redis_prefix,
    )
    upgrade(settings.database_url)
    tracing = bool(os.environ.get("BENCH_TRACE"))
    if tracing:
        store_trace.install()
        from tomchat.chat.access import RoomAccess
        from tomchat.chat.conversation import Conversation
        from tomchat.chat.identity import People
        from tomchat.chat.leasing import RoomLeasing
        from tomchat.chat.memory import RoomMemory
        from tomchat.chat.reply_run import ReplyRun
        from tomchat.live.server import LiveServer
        from tomchat.store.rooms import RoomReader

        store_trace.install_timers(
            [
                (Conversation, "post_message"),
                (Conversation, "next_turn"),
                (RoomLeasing, "hold"),
                (RoomLeasing, "let_go"),
                (ReplyRun, "start"),
                (RoomMemory, "turns"),
                (RoomReader, "streaming_replies_in"),
                (RoomReader, "room"),
                (RoomReader, "recent_at"),
                (RoomReader, "snapshot"),
                (People, "admit"),
                (People, "check_name"),
                (RoomAccess, "allows"),
                (Conversation, "ensure_room"),
                (LiveServer, "join_room"),
                (LiveServer, "_catch_up"),
                (LiveServer, "announce"),
            ]
        )
    app = create_app(settings, migrate=False)
    if tracing:
        store_trace.install_reads(app.services.store.db.reader)
    model = StampedDemoModel(args.delay_ms, args.chunks)
    app.services.model = model
    app.services.conversation.model = model
    # The replier (frozen) holds the model that streams replies: a copy with ours.
    conversation = app.services.conversation
    conversation.replier = dataclasses.replace(conversation.replier, model=model)

    def report() -> None:
        # For the benchmark's log: how well group commit batched.
        path = sqlite_path(settings.database_url)
        if path is not None:
            with contextlib.closing(sqlite3.connect(path)) as db:
                (count,) = db.execute("SELECT count(*) FROM events").fetchone()
            commits = app.services.store.batches_written
            print(f"group commits: {commits} events: {count}", file=sys.stderr, flush=True)

    # Shutdown hooks run in order: these after tomchat's own (the store has closed).
    app.other_asgi_app.on_shutdown.append(report)
    if tracing:
        app.other_asgi_app.on_shutdown.append(store_trace.report)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()

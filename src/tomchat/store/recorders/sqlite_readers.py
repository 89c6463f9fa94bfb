"""The SQLite side of short reads: a read transaction as one synchronous function, in one hop
to a reader thread.

Through the async driver every statement is several round trips to aiosqlite's thread (a
cursor, the execute, the fetch, the close; the transaction's BEGIN and its end besides), and
each comes back through the event loop: at twenty rooms streaming, reading a room's row took
~40 ms that way, most of it waiting for the loop's turn ten times over. Here a few threads,
each taking a pooled connection of its own, run the whole read — ``BEGIN``, the statements,
``COMMIT`` — and the loop hears once, when it is done. In WAL mode readers never wait for the
writer, so the threads never queue behind a write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from tomchat.store.recorders.sqlite_writer import configure_sqlite_connection

T = TypeVar("T")
THREADS = 4


class SqliteReaders:
    """``THREADS`` threads and as many connections: short read transactions."""

    def __init__(self, url: str, synchronous: str = "FULL") -> None:
        sync_url = make_url(url).set(drivername="sqlite+pysqlite")
        # A connection is only ever used by one thread at a time (the one that checked it
        # out), but not always the same thread: sqlite3's own check would refuse that.
        self.engine: Engine = create_engine(
            sync_url,
            pool_size=THREADS,
            max_overflow=0,
            connect_args={"check_same_thread": False},
        )
        _tune(self.engine, synchronous)
        self._executor = ThreadPoolExecutor(THREADS, thread_name_prefix="tomchat-sqlite-reader")

    async def run(self, work: Callable[[Connection], T]) -> T:
        """``work`` inside one deferred ``BEGIN`` … ``COMMIT`` (one snapshot of the file)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._read, work)

    def _read(self, work: Callable[[Connection], T]) -> T:
        with self.engine.connect() as conn, conn.begin():
            return work(conn)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shut)

    def _shut(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()


def _tune(engine: Engine, synchronous: str) -> None:
    """The async reader engine's settings (``recorders.sqlite``)."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        configure_sqlite_connection(dbapi_connection, synchronous)

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

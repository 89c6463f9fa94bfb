"""Timings of every group commit, for diagnosing the relay benchmark.

``BENCH_TRACE=1 python -m bench.relay …`` makes :mod:`bench.tomchat_server` install these
wrappers and print, at shutdown, how long appends waited, how long the writer thread held each
transaction (how long its ``BEGIN IMMEDIATE`` waited for another writer, and how much of it
was the work before ``COMMIT``), and how big batches were;
``bench.relay`` then shows the server's log.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from tomchat.store import event_store
from tomchat.store.recorders import sqlite_writer

samples: dict[str, list[float]] = {
    "queue_wait_ms": [],
    "commit_ms": [],
    "writer_transaction_ms": [],
    "writer_work_ms": [],
    "writer_begin_wait_ms": [],
    "events_per_commit": [],
}


def install() -> None:
    transaction = sqlite_writer.SqliteWriter._transaction
    begin = sqlite_writer._begin_immediate

    def timed_begin(raw: Any) -> None:
        started = time.perf_counter()
        try:
            begin(raw)
        finally:
            samples["writer_begin_wait_ms"].append((time.perf_counter() - started) * 1000)

    commit = event_store.EventStore._commit

    def timed_transaction(self: Any, work: Callable[[Any], Any]) -> Any:
        def timed_work(batch: Any) -> Any:
            started = time.perf_counter()
            try:
                return work(batch)
            finally:
                samples["writer_work_ms"].append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        try:
            return transaction(self, timed_work)
        finally:
            samples["writer_transaction_ms"].append((time.perf_counter() - started) * 1000)

    async def timed_commit(self: Any, batch: list[Any]) -> None:
        now = time.time()
        samples["queue_wait_ms"].append(max(now - r.at.timestamp() for r in batch) * 1000)
        started = time.perf_counter()
        await commit(self, batch)
        samples["commit_ms"].append((time.perf_counter() - started) * 1000)
        samples["events_per_commit"].append(sum(len(r.events) for r in batch))

    sqlite_writer.SqliteWriter._transaction = timed_transaction  # type: ignore[method-assign]
    sqlite_writer._begin_immediate = timed_begin
    event_store.EventStore._commit = timed_commit  # type: ignore[method-assign]


reads: dict[str, int] = {}  # first words of each statement the readers ran, counted
connections = {"reader": 0}  # connections the reader pool opened


def install_reads(engine: Any) -> None:
    """Count the reader engine's connections and statements (``BENCH_TRACE``)."""
    from sqlalchemy import event

    sync = engine.sync_engine

    @event.listens_for(sync, "connect")
    def connected(*_: Any) -> None:
        connections["reader"] += 1

    @event.listens_for(sync, "before_cursor_execute")
    def executed(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        key = " ".join(statement.split())[:90]
        reads[key] = reads.get(key, 0) + 1


def report() -> None:
    print(f"TRACE reader connections opened: {connections['reader']}", file=sys.stderr)
    for key, count in sorted(reads.items(), key=lambda kv: -kv[1])[:25]:
        print(f"TRACE read x{count}: {key}", file=sys.stderr, flush=True)
    for name, values in samples.items():
        if values:
            ordered = sorted(values)
            print(
                f"TRACE {name}: n={len(ordered)} mean={statistics.mean(ordered):.3f} "
                f"p50={ordered[len(ordered) // 2]:.3f} p99={ordered[int(len(ordered) * 0.99)]:.3f}",
                file=sys.stderr,
                flush=True,
            )


def install_timers(targets: list[tuple[Any, str]]) -> None:
    """Time these coroutine methods (``(class, name)``) into ``samples`` (``BENCH_TRACE``)."""
    import functools

    for owner, name in targets:
        original = getattr(owner, name)
        key = f"{owner.__name__}.{name}_ms"
        samples[key] = []

        def wrap(original: Any = original, key: str = key) -> Any:
            @functools.wraps(original)
            async def timed(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    samples[key].append((time.perf_counter() - started) * 1000)

            return timed

        setattr(owner, name, wrap())

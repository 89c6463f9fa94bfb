"""What a busy event loop costs a thread that uses SQLite: the GIL's switch interval.

The sqlite3 module lets go of the GIL around every step of a statement; a thread that wants
it back while another thread is running Python gets it only when that thread is made to drop
it, after ``sys.getswitchinterval()``. Here the main thread spins in Python (a busy event
loop), and a second thread runs write transactions on a WAL database — BEGIN IMMEDIATE, an
insert of N rows (``executemany``: one step per row), a select, COMMIT — as tomchat's
SQLite writer thread does. Printed: the transaction's wall time, p50 and p99, at Python's
default switch interval and at the one tomchat's server sets (``tomchat.runtime``), for one
row and for twenty. ``python -m bench.gil_handoff`` writes ``bench/results/gil_handoff.json``.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import Row, percentile, write_result
from tomchat.runtime import SWITCH_INTERVAL_SECONDS

DEFAULT_SWITCH = 0.005  # CPython's
TRANSACTIONS = 150


def transactions(path: Path, rows: int) -> list[float]:
    """Wall milliseconds of each transaction while this thread's caller keeps the GIL busy."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS t (a INTEGER PRIMARY KEY, b TEXT)")
    took: list[float] = []
    for _ in range(TRANSACTIONS):
        started = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO t (b) VALUES (?)", [("x" * 200,)] * rows)
        db.execute("SELECT max(a) FROM t").fetchone()
        db.execute("COMMIT")
        took.append((time.perf_counter() - started) * 1000)
        time.sleep(0.002)  # between batches, as the writer waits for the next
    db.close()
    return took


def measure(switch: float, rows: int, folder: Path) -> list[float]:
    sys.setswitchinterval(switch)
    result: list[float] = []
    writer = threading.Thread(
        target=lambda: result.extend(transactions(folder / f"{switch}-{rows}.db", rows))
    )
    writer.start()
    spins = 0
    while writer.is_alive():  # the busy event loop: pure Python, never blocking
        for i in range(1000):
            spins += i
    writer.join()
    sys.setswitchinterval(DEFAULT_SWITCH)
    return result


def main() -> None:
    started = time.monotonic()
    rows: list[Row] = []
    details: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="tomchat-gil-") as tmp:
        for n in (1, 20):
            default = measure(DEFAULT_SWITCH, n, Path(tmp))
            tuned = measure(SWITCH_INTERVAL_SECONDS, n, Path(tmp))
            for q in (50, 99):
                t, d = percentile(tuned, q), percentile(default, q)
                rows.append(
                    Row(
                        f"SQLite write transaction ({n} rows) beside a busy event loop, "
                        f"switch interval {SWITCH_INTERVAL_SECONDS * 1000:g} ms vs 5 ms: p{q}",
                        t,
                        d,
                        "ms",
                        "",
                        None,
                    )
                )
                details[f"{n} rows p{q}"] = {"tuned_ms": t, "default_ms": d}
            print(
                f"{n} rows: p50 {percentile(tuned, 50):.2f} ms (5 ms interval: "
                f"{percentile(default, 50):.2f}), p99 {percentile(tuned, 99):.2f} ms "
                f"({percentile(default, 99):.2f})"
            )
    write_result("gil_handoff", rows, details, started)


if __name__ == "__main__":
    main()

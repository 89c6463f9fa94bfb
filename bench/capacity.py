"""Capacity: the most rooms one process holds, each streaming 50 chunks/s to 3 members, with
chunk p99 ≤ 50 ms — the figure a deployer sizes by — for tomchat on SQLite, tomchat on
PostgreSQL, and the bare python-socketio relay in the same run.

For each system the room count doubles from ``--start`` while a window passes (or halves\nuntil one does) (p99 ≤ 50 ms,
≥ 95 % of the chunks due delivered, no errors), then one bisection step between the last
count that passed and the first that failed; every step is a fresh server process and fresh
clients (two client processes, :mod:`bench.relay_clients`). The answer is the largest count
that passed. ``--most`` caps the search (the clients share the machine's two cores with the
server: past that they, not the server, would be measured); a system still passing there is
reported as that count and marked so in the details.

``python -m bench.capacity [--seconds 4] [--start 8] [--most 160]`` writes
``bench/results/capacity.json``; PostgreSQL when 127.0.0.1:5432 answers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Row, free_port, reachable, write_result
from bench.scaleout import Window, bare_command, measure, scratch_postgres, tomchat_command

MEMBERS = 3
P99_MS = 50.0
DELIVERED = 0.95


def passes(w: Window) -> bool:
    return w.p(99) <= P99_MS and w.deliveries >= DELIVERED * w.expected and not w.errors


def search(
    system: str,
    command: Callable[[int], list[str]],
    args: argparse.Namespace,
    work: Path,
) -> dict[str, Any]:
    """The largest room count that passes (0 if even ``--start`` fails), and every step."""
    steps: list[dict[str, Any]] = []

    def attempt(rooms: int) -> bool:
        port = free_port()
        w = measure(system, [command(port)], [port], rooms, MEMBERS, args.seconds, work)
        ok = passes(w)
        steps.append(w.summary() | {"passed": ok})
        print(json.dumps(steps[-1]), file=sys.stderr, flush=True)
        return ok

    good, bad = 0, None
    rooms = args.start
    while rooms <= args.most:  # up, doubling, while it passes
        if not attempt(rooms):
            bad = rooms
            break
        good = rooms
        rooms *= 2
    if bad is None and good < args.most:
        if attempt(args.most):
            good = args.most
        else:
            bad = args.most
    while not good and bad is not None and bad > 1:  # down, halving, until one passes
        rooms = bad // 2
        if attempt(rooms):
            good = rooms
        else:
            bad = rooms
    if bad is not None and good and bad - good > 1:
        middle = (good + bad) // 2
        if attempt(middle):
            good = middle
    return {"rooms": good, "capped": bad is None, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--start", type=int, default=8)
    parser.add_argument("--most", type=int, default=160)
    args = parser.parse_args()
    started = time.monotonic()
    details: dict[str, Any] = {"members": MEMBERS, "p99_ms": P99_MS, "seconds": args.seconds}
    with tempfile.TemporaryDirectory(prefix="tomchat-capacity-") as tmp:
        work = Path(tmp)
        bare = search("bare", bare_command, args, work)
        sqlite_url = f"sqlite+aiosqlite:///{work / 'capacity.db'}"
        tom_sqlite = search("tomchat_sqlite", lambda p: tomchat_command(p, sqlite_url), args, work)
        details |= {"bare": bare, "tomchat_sqlite": tom_sqlite}
        tom_pg: dict[str, Any] | None = None
        if reachable("127.0.0.1", 5432):
            with scratch_postgres("capacity") as pg_url:
                tom_pg = search("tomchat_pg", lambda p: tomchat_command(p, pg_url), args, work)
            details["tomchat_postgresql"] = tom_pg
    figure = f"capacity: rooms x {MEMBERS} members at 50 chunks/s, chunk p99 ≤ {P99_MS:.0f} ms"
    rows = [
        Row(f"{figure}, SQLite (vs bare relay)", tom_sqlite["rooms"], bare["rooms"], "", "", None)
    ]
    if tom_pg is not None:
        rows.append(
            Row(
                f"{figure}, PostgreSQL (vs bare relay)",
                tom_pg["rooms"],
                bare["rooms"],
                "",
                "",
                None,
            )
        )
    write_result("capacity", rows, details, started)


if __name__ == "__main__":
    main()

"""Export: how fast a 100,000-message room becomes a file, and how much memory that takes.

A SQLite room of 100,000 messages (50,000 user messages and 50,000 replies, written through
``EventStore.append`` so the projection is the real one) is exported

- in-process, in each format: ``store.transcripts`` pages into ``export.render``, which is
  exactly what the route streams, to a sink that only counts bytes;
- over HTTP, as Markdown: a ``tomchat serve`` process streams
  ``GET /api/rooms/{id}/transcript?format=markdown`` to a client that only counts bytes.

Each in-process export runs in a fresh interpreter, warmed up by exporting one page; its
peak RSS is then reset (``/proc/self/clear_refs``) and the peak (``VmHWM``) after the
export, minus the RSS before it, is what the export took. The server is measured the same
way from outside, around one request. A 10,000-message room is
measured too: flat memory means the two growths are about the same.

Targets: ≥ 100,000 messages/s for Markdown, peak RSS growth ≤ 50 MB.
``python -m bench.export_bench`` writes ``bench/results/export.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    PROJECT_ROOT,
    Row,
    fmt,
    free_port,
    process,
    python_module,
    wait_for_port,
    write_result,
)
from tomchat.chat.export import FORMATS, Format
from tomchat.domain.events import (
    Event,
    MessagePosted,
    ReplyCompleted,
    ReplyStarted,
    ReplyStatus,
    RoomCreated,
)

BIG, SMALL = 100_000, 10_000
TARGET_RATE = 100_000.0
TARGET_GROWTH_MB = 50.0
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)

USER_TEXTS = [
    "Tom, what do you think about the river crossing tomorrow?",
    "I'd rather wait for the ferry.\nIt is safer, and the view is better.",
    "Has anyone read the book I mentioned last week? The one about *lighthouses*.",
    "ok",
]
REPLY = (
    "The river runs high this time of year, and the current near the old mill is stronger "
    "than it looks. If you must cross, do it at the ford below the bridge, early, while the "
    "water is cold and slow. Take a rope, and someone who has done it before."
)


def session(room: str, messages: int) -> list[tuple[datetime, list[Event]]]:
    """``messages`` messages, half user messages and half replies, as timed appends."""
    appends: list[tuple[datetime, list[Event]]] = [
        (START, [RoomCreated(name="Benchmark room", character="Tom")])
    ]
    batch: list[Event] = []
    at = START
    for i in range(messages // 2):
        batch.append(
            MessagePosted(
                message_id=f"{room}-u{i:07d}", username=f"user{i % 7}", content=USER_TEXTS[i % 4]
            )
        )
        status: ReplyStatus = "stopped" if i % 50 == 0 else "complete"
        batch.append(ReplyStarted(message_id=f"{room}-r{i:07d}", character="Tom"))
        batch.append(ReplyCompleted(message_id=f"{room}-r{i:07d}", content=REPLY, status=status))
        if len(batch) >= 3000:  # ~1,000 messages: one transaction each
            at += timedelta(hours=6)  # 2,000 messages a batch, 8,000 a day: day headings too
            appends.append((at, batch))
            batch = []
    if batch:
        appends.append((at + timedelta(hours=6), batch))
    return appends


async def build(url: str, rooms: dict[str, int]) -> None:
    """The small room through ``EventStore.append``, as the server writes; the big one in
    bulk, its message rows folded by ``Transcript`` (the projection's twin, checked equal to
    the table in tests/test_event_store.py): the append path would take most of the two
    minutes a benchmark may run, and the export reads the same rows either way."""
    from tomchat.store.database import Database
    from tomchat.store.event_store import EventStore
    from tomchat.store.migrate import upgrade_async

    await upgrade_async(url)
    db = Database(url)
    store = EventStore(db)
    for room, size in rooms.items():
        if size <= SMALL:
            for at, events in session(room, size):
                await store.append(room, events, recorded_at=at)
    await store.close()
    await db.dispose()
    for room, size in rooms.items():
        if size > SMALL:
            bulk_insert(url, room, session(room, size))


def bulk_insert(url: str, room: str, appends: list[tuple[datetime, list[Event]]]) -> None:
    import uuid
    from dataclasses import asdict

    from sqlalchemy import create_engine

    from tomchat.domain.codec import encode_data
    from tomchat.domain.events import RecordedEvent, event_type
    from tomchat.domain.transcript import Transcript
    from tomchat.store.schema import events, messages, streams

    recorded: list[RecordedEvent] = []
    for at, batch in appends:
        for event in batch:
            version = len(recorded) + 1
            recorded.append(RecordedEvent(version, room, version, uuid.uuid4(), at, event))
    folded = Transcript.fold(room, recorded)
    engine = create_engine(url.replace("sqlite+aiosqlite", "sqlite"))
    with engine.begin() as conn:
        conn.execute(
            streams.insert(),
            {
                "room_id": room,
                "version": len(recorded),
                "name": folded.name,
                "character": folded.character,
                "created_at": recorded[0].recorded_at,
                "updated_at": recorded[-1].recorded_at,
            },
        )
        conn.execute(
            events.insert(),
            [
                {
                    "room_id": room,
                    "version": r.version,
                    "event_id": r.event_id,
                    "type": event_type(r.event),
                    "data": encode_data(r.event).decode(),
                    "recorded_at": r.recorded_at,
                }
                for r in recorded
            ],
        )
        conn.execute(messages.insert(), [asdict(row) for row in folded.rows])
    engine.dispose()


def kb(pid: int | str, field: str) -> int:
    """A size in kB from ``/proc/<pid>/status``: VmRSS now, VmHWM the peak since the last
    ``reset_peak`` (or since exec: ``ru_maxrss`` would carry the parent's peak across exec)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def reset_peak(pid: int | str) -> None:
    """Start VmHWM afresh at the current RSS (Linux: ``5`` to ``clear_refs``)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def export_in_process(url: str, room: str, fmt_: Format) -> dict[str, Any]:
    """The child's part: one export, timed, with its memory."""
    from tomchat.chat.export import render
    from tomchat.store.database import Database
    from tomchat.store.transcripts import TranscriptReader

    db = Database(url)
    reader = TranscriptReader(db)
    # Warm up: connections open, code paths run once, before the baseline is taken.
    warm = await reader.summary(room)
    assert warm is not None
    async for _ in render(fmt_, warm, _first_page(reader, warm), None):
        pass
    reset_peak("self")
    before = kb("self", "VmRSS")
    cpu = time.process_time()
    started = time.perf_counter()
    summary = await reader.summary(room)
    assert summary is not None
    size = 0
    async for piece in render(fmt_, summary, reader.message_pages(summary), None):
        size += len(piece)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu  # both threads: the loop's and the SQLite driver's
    peak = kb("self", "VmHWM")
    await db.dispose()
    return {
        "messages": summary.count,
        "bytes": size,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rss_before_kb": before,
        "peak_kb": peak,
        "growth_mb": max(0, peak - before) / 1024,
    }


async def _first_page(reader: Any, summary: Any) -> Any:
    async for page in reader.message_pages(summary):
        yield page
        return


def child(url: str, room: str, fmt_: Format) -> dict[str, Any]:
    done = subprocess.run(
        python_module("bench.export_bench", "--child", url, room, fmt_),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def download(url: str) -> tuple[int, float]:
    """Bytes and seconds of one GET, read by curl where there is one: a Python client on the
    same two cores would be timed as much as the server."""
    curl = shutil.which("curl")
    if curl:
        done = subprocess.run(
            [curl, "-sSf", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url],
            capture_output=True,
            text=True,
            check=True,
        )
        size, seconds = done.stdout.split()
        return int(size), float(seconds)
    started = time.perf_counter()
    total = 0
    with httpx.stream("GET", url, timeout=120) as response:
        response.raise_for_status()
        for piece in response.iter_bytes():
            total += len(piece)
    return total, time.perf_counter() - started


def over_http(url: str, workdir: Path) -> dict[str, Any]:
    port = free_port()
    env = {
        "TOMCHAT_DATABASE_URL": url,
        "TOMCHAT_PORT": str(port),
        "TOMCHAT_MEDIA_DIR": str(workdir),
    }
    with process(python_module("tomchat.cli", "serve"), env, workdir / "server.log") as server:
        wait_for_port(port, server)
        base = f"http://127.0.0.1:{port}/api/rooms"
        download(f"{base}/small/transcript?format=markdown")  # warm up
        reset_peak(server.pid)
        before = kb(server.pid, "VmRSS")
        size, seconds = download(f"{base}/big/transcript?format=markdown")
        peak = kb(server.pid, "VmHWM")
    return {
        "messages": BIG,
        "bytes": size,
        "seconds": seconds,
        "rss_before_kb": before,
        "peak_kb": peak,
        "growth_mb": max(0, peak - before) / 1024,
        "client": "curl" if shutil.which("curl") else "httpx",
    }


def best(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest of the runs (the machine is shared), with the largest memory growth of
    any of them (memory has no noise to forgive)."""
    fastest = min(results, key=lambda r: r["seconds"])
    return {**fastest, "growth_mb": max(r["growth_mb"] for r in results), "runs": len(results)}


def rate_row(figure: str, result: dict[str, Any], target: bool) -> Row:
    rate = result["messages"] / result["seconds"]
    return Row(
        f"{figure}: messages/s",
        rate,
        None,
        "/s",
        "≥ 100,000/s" if target else "",
        rate >= TARGET_RATE if target else None,
    )


def growth_row(figure: str, result: dict[str, Any], target: bool = True) -> Row:
    growth = result["growth_mb"]
    return Row(
        f"{figure}: peak RSS growth",
        growth,
        None,
        "MB",
        "≤ 50 MB" if target else "",
        growth <= TARGET_GROWTH_MB if target else None,
    )


def run(keep: Path | None, rounds: int) -> tuple[list[Row], dict[str, Any]]:
    workdir = keep or Path(tempfile.mkdtemp(prefix="tomchat-export-bench-"))
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite+aiosqlite:///{workdir / 'export.db'}"
        built = time.perf_counter()
        if not (workdir / "export.db").exists():
            asyncio.run(build(url, {"big": BIG, "small": SMALL}))
        details: dict[str, Any] = {
            "build_seconds": round(time.perf_counter() - built, 1),
            "rounds": rounds,
            "runs": {},
        }
        rows: list[Row] = []
        for fmt_ in FORMATS:
            result = best([child(url, "big", fmt_) for _ in range(rounds)])
            details["runs"][f"{fmt_} {BIG} in-process"] = result
            figure = f"export {fmt_}, {BIG:,} messages, in-process"
            rows.append(rate_row(figure, result, target=fmt_ == "markdown"))
            # Less at the mercy of other work on a shared machine than the wall clock.
            per_cpu = result["messages"] / result["cpu_seconds"]
            rows.append(Row(f"{figure}: messages per CPU second", per_cpu, None, "/s", "", None))
            rows.append(growth_row(figure, result))
        small = best([child(url, "small", "markdown") for _ in range(rounds)])
        details["runs"][f"markdown {SMALL} in-process"] = small
        rows.append(
            growth_row(f"export markdown, {SMALL:,} messages, in-process", small, target=False)
        )
        http = best([over_http(url, workdir) for _ in range(rounds)])
        details["runs"][f"markdown {BIG} over HTTP"] = http
        figure = f"export markdown, {BIG:,} messages, over HTTP (server process)"
        rows.append(rate_row(figure, http, target=True))
        rows.append(growth_row(figure, http))
        return rows, details
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.export_bench")
    parser.add_argument(
        "--child", nargs=3, metavar=("URL", "ROOM", "FORMAT"), help=argparse.SUPPRESS
    )
    parser.add_argument("--keep", type=Path, help="build (or reuse) the database in this folder")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each export; best counts")
    # Called as main() by a runner: its own command line is not ours to parse.
    args = parser.parse_args([] if argv is None else argv)
    if args.child:
        url, room, fmt_ = args.child
        if fmt_ not in FORMATS:
            parser.error(f"no format {fmt_!r}")
        print(json.dumps(asyncio.run(export_in_process(url, room, fmt_))))
        return
    started = time.monotonic()
    rows, details = run(args.keep, args.rounds)
    path = write_result("export", rows, details, started)
    for row in rows:
        mark = "" if row.met is None else ("  ok" if row.met else "  MISSED")
        print(f"{row.figure}: {fmt(row.tomchat)} {row.unit}{mark}")
    print(f"(database built in {details['build_seconds']} s; results in {path})")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Scale-out relay: two tomchat processes on one PostgreSQL and one Redis against two bare
python-socketio processes with ``AsyncRedisManager`` on the same Redis, same load, same run.

Every room has ``C`` members spread over both processes (member ``k`` of room ``r`` joins
process ``(r * C + k) % 2``), so every chunk crosses Redis to reach half its room, and the
rooms' drivers (member 0, who keeps the room talking) alternate between the processes: each
produces half the replies. The demo character streams 50 chunks/s into every room. Measured
over one window for both systems: deliveries per second, the two server processes' CPU
seconds together (Redis and PostgreSQL are not counted: the bare relay has a Redis too, and
the database is the point of tomchat), deliveries per server CPU-second, chunk latency p50/p99.

``python -m bench.scaleout [--seconds 8] [--shape 20x3]`` writes ``bench/results/scaleout.json``;
skipped (no rows) unless PostgreSQL answers on 127.0.0.1:5432 and Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.common import (
    Row,
    free_port,
    percentile,
    process,
    python_module,
    reachable,
    read_line,
    stop,
    wait_for_port,
    write_result,
)
from bench.relay import CHUNKS_PER_REPLY, DELAY_MS, WARMUP_S

PG_ADMIN_URL = os.environ.get("TOMCHAT_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TOMCHAT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Window:
    """What one system did in one measured window."""

    system: str
    rooms: int
    members: int
    seconds: float
    deliveries: int
    cpu_seconds: float
    latencies_ms: list[float]
    errors: list[str]

    @property
    def per_second(self) -> float:
        return self.deliveries / self.seconds

    @property
    def per_cpu_second(self) -> float:
        return self.deliveries / self.cpu_seconds if self.cpu_seconds else float("nan")

    @property
    def expected(self) -> float:
        return self.rooms * self.members * self.seconds * 1000 / DELAY_MS

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def summary(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "shape": f"{self.rooms}x{self.members}",
            "seconds": self.seconds,
            "deliveries": self.deliveries,
            "expected_deliveries": self.expected,
            "deliveries_per_s": round(self.per_second, 1),
            "server_cpu_s": round(self.cpu_seconds, 3),
            "deliveries_per_cpu_s": round(self.per_cpu_second, 1),
            "latency_p50_ms": self.p(50),
            "latency_p99_ms": self.p(99),
            "latency_max_ms": max(self.latencies_ms, default=float("nan")),
            "errors": self.errors,
        }


def tomchat_command(port: int, database_url: str, redis_prefix: str | None = None) -> list[str]:
    args = ["--port", str(port), "--database-url", database_url]
    if redis_prefix is not None:
        args += ["--redis-url", REDIS_URL, "--redis-prefix", redis_prefix]
    return python_module("bench.tomchat_server", *args, *_pace())


def bare_command(port: int, channel: str | None = None) -> list[str]:
    args = ["--port", str(port)]
    if channel is not None:
        args += ["--redis-url", REDIS_URL, "--channel", channel]
    return python_module("bench.bare_relay", *args, *_pace())


def _pace() -> list[str]:
    return ["--delay-ms", str(DELAY_MS), "--chunks", str(CHUNKS_PER_REPLY)]


def measure(
    system: str,
    commands: Sequence[Sequence[str]],
    ports: Sequence[int],
    rooms: int,
    members: int,
    seconds: float,
    workdir: Path,
    *,
    client_processes: int = 2,
    profile: Path | None = None,
) -> Window:
    """Start the servers, connect ``rooms`` x ``members`` clients (client process ``i``
    to server ``i % len(servers)``), and measure one window after a warm-up."""
    prefix = f"{system.replace('+', '_')}-{uuid.uuid4().hex[:6]}"
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(process(c, log=workdir / f"{prefix}-{i}.log"))
            for i, c in enumerate(commands)
        ]
        for port, server in zip(ports, servers, strict=True):
            wait_for_port(port, server)
        shards = max(client_processes, len(servers))
        clients = [
            subprocess.Popen(
                python_module(
                    "bench.relay_clients",
                    *("--url", f"http://127.0.0.1:{ports[i % len(ports)]}"),
                    *("--room-prefix", prefix, "--rooms", str(rooms)),
                    *("--clients", str(members), "--shard", f"{i}/{shards}"),
                ),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            for i in range(shards)
        ]
        try:
            for c in clients:
                line = read_line(c, 120)
                if line != "READY":
                    raise RuntimeError(f"client said {line!r}")
            time.sleep(WARMUP_S)
            t0 = time.time() + 0.05
            t1 = t0 + seconds
            for c in clients:
                assert c.stdin is not None
                c.stdin.write(f"{t0} {t1}\n".encode())
                c.stdin.flush()
            time.sleep(max(0.0, t0 - time.time()))
            spies = [
                _profiler(s.pid, seconds, profile, f"{system}-{rooms}x{members}-{i}")
                for i, s in enumerate(servers)
            ]
            ps = [psutil.Process(s.pid) for s in servers]
            cpu0 = sum(_cpu(p) for p in ps)
            time.sleep(max(0.0, t1 - time.time()))
            cpu1 = sum(_cpu(p) for p in ps)
            reports = [json.loads(read_line(c, 60)) for c in clients]
            for spy in spies:
                if spy is not None:
                    spy.wait(60)
        finally:
            for c in clients:
                stop(c)
    return Window(
        system=system,
        rooms=rooms,
        members=members,
        seconds=seconds,
        deliveries=sum(r["deliveries"] for r in reports),
        cpu_seconds=cpu1 - cpu0,
        latencies_ms=[x for r in reports for x in r["latencies_ms"]],
        errors=[e for r in reports for e in r["errors"]],
    )


def _cpu(p: psutil.Process) -> float:
    times = p.cpu_times()
    return float(times.user + times.system)


def _profiler(
    pid: int, seconds: float, folder: Path | None, name: str
) -> subprocess.Popen[bytes] | None:
    """py-spy on a server for the window: collapsed stacks (``bench.flame`` summarises)."""
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [
            *(str(spy), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "100"),
            *("-f", "raw", "-o", str(folder / f"{name}.txt")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _pg_admin(sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


@contextlib.contextmanager
def scratch_postgres(tag: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one benchmark (dropped afterwards): its asyncpg URL."""
    from tomchat.store.migrate import upgrade

    name = f"tomchat_bench_{tag}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        url = f"{base}/{name}"
        upgrade(url)  # once, before the processes start (as ``tomchat serve`` does)
        yield url
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def services_up() -> bool:
    return reachable("127.0.0.1", 5432) and reachable("127.0.0.1", 6379)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--shape", default="20x3", help="ROOMSxMEMBERS")
    parser.add_argument("--profile", type=Path, help="py-spy each server into this folder")
    args = parser.parse_args()
    started = time.monotonic()
    rooms, members = (int(n) for n in args.shape.split("x"))
    if not services_up():
        write_result("scaleout", [], {"skipped": "PostgreSQL or Redis not reachable"}, started)
        return
    with (
        tempfile.TemporaryDirectory(prefix="tomchat-scaleout-") as tmp,
        scratch_postgres("scaleout") as url,
    ):
        work = Path(tmp)
        ports = [free_port(), free_port()]
        channel = f"bare-{uuid.uuid4().hex[:8]}"
        bare = measure(
            "bare+redis",
            [bare_command(p, channel) for p in ports],
            ports,
            rooms,
            members,
            args.seconds,
            work,
            profile=args.profile,
        )
        ports = [free_port(), free_port()]
        redis_prefix = f"bench-{uuid.uuid4().hex[:8]}"
        tom = measure(
            "tomchat+pg+redis",
            [tomchat_command(p, url, redis_prefix) for p in ports],
            ports,
            rooms,
            members,
            args.seconds,
            work,
            profile=args.profile,
        )
    for w in (bare, tom):
        print(json.dumps(w.summary()), file=sys.stderr)
    shape = f"{rooms}x{members}"
    ratio = tom.per_cpu_second / bare.per_cpu_second
    rows = [
        Row(
            f"scale-out {shape}, 2 processes + Redis (+ PostgreSQL): deliveries/s",
            tom.per_second,
            bare.per_second,
            "/s",
            "",
            None,
        ),
        Row(
            f"scale-out {shape}: deliveries per server CPU-s",
            tom.per_cpu_second,
            bare.per_cpu_second,
            "/CPU-s",
            "≥ 0.6x",
            ratio >= 0.6,
        ),
        Row(f"scale-out {shape}: chunk latency p50", tom.p(50), bare.p(50), "ms", "", None),
        Row(f"scale-out {shape}: chunk latency p99", tom.p(99), bare.p(99), "ms", "", None),
    ]
    write_result(
        "scaleout",
        rows,
        {"runs": [bare.summary(), tom.summary()], "delay_ms": DELAY_MS},
        started,
    )


if __name__ == "__main__":
    main()

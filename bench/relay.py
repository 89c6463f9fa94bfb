"""Durable relay: tomchat against a bare python-socketio relay, same load, same run.

For each shape R rooms x C clients the demo character streams 50 chunks/s into every room
(``--delay-ms 20``). tomchat commits every chunk (group commit, SQLite) before emitting it; the
bare relay (:mod:`bench.bare_relay`) emits straight away and persists nothing. Clients are
python-socketio clients in separate processes (:mod:`bench.relay_clients`). Measured over the
same window for both: deliveries per second, the server process's CPU seconds (psutil: user +
system, every thread), deliveries per server CPU-second, and chunk latency from production
(the stamp the model puts in each chunk) to receipt, p50 and p99.

``python -m bench.relay [--seconds 8] [--shapes 1x10,20x5,100x2]`` writes
``bench/results/relay.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
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
    read_line,
    stop,
    wait_for_port,
    write_result,
)

DELAY_MS = 20  # 50 chunks per second per room
CHUNKS_PER_REPLY = 250  # five-second replies, so a reply's start and end are rare events
WARMUP_S = 2.0


@dataclass
class Run:
    system: str
    rooms: int
    clients: int
    seconds: float
    deliveries: int
    cpu_seconds: float
    client_cpu_seconds: float
    latencies_ms: list[float]
    errors: list[str]
    system_cpu_seconds: float
    main_thread_cpu_seconds: float
    thread_cpu_seconds: list[float]
    events_per_commit: float | None
    turnarounds_ms: list[float]

    @property
    def per_second(self) -> float:
        return self.deliveries / self.seconds

    @property
    def per_cpu_second(self) -> float:
        return self.deliveries / self.cpu_seconds if self.cpu_seconds else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "shape": f"{self.rooms}x{self.clients}",
            "seconds": self.seconds,
            "deliveries": self.deliveries,
            "expected_deliveries": self.rooms * self.clients * self.seconds * 1000 / DELAY_MS,
            "deliveries_per_s": round(self.per_second, 1),
            "server_cpu_s": round(self.cpu_seconds, 3),
            "server_system_cpu_s": round(self.system_cpu_seconds, 3),
            "server_main_thread_cpu_s": round(self.main_thread_cpu_seconds, 3),
            "server_busiest_threads_cpu_s": self.thread_cpu_seconds,
            "client_cpu_s": round(self.client_cpu_seconds, 3),
            "events_per_group_commit": self.events_per_commit,
            "deliveries_per_cpu_s": round(self.per_cpu_second, 1),
            "latency_p50_ms": percentile(self.latencies_ms, 50),
            "latency_p99_ms": percentile(self.latencies_ms, 99),
            "turnaround_p50_ms": percentile(self.turnarounds_ms, 50),
            "turnaround_p99_ms": percentile(self.turnarounds_ms, 99),
            "latency_max_ms": max(self.latencies_ms, default=float("nan")),
            "errors": self.errors,
        }


def server_command(system: str, port: int, workdir: Path) -> list[str]:
    common = ["--port", str(port), "--delay-ms", str(DELAY_MS), "--chunks", str(CHUNKS_PER_REPLY)]
    if system == "bare":
        return python_module("bench.bare_relay", *common)
    url = f"sqlite+aiosqlite:///{workdir / 'tomchat.db'}"
    # "tomchat-normal": the same with TOMCHAT_SQLITE_SYNC=normal (no fsync per commit).
    sync = ["--sqlite-sync", "normal"] if system == "tomchat-normal" else []
    return python_module("bench.tomchat_server", "--database-url", url, *common, *sync)


def measure(
    system: str,
    rooms: int,
    clients: int,
    seconds: float,
    workdir: Path,
    profile: Path | None = None,
) -> Run:
    port = free_port()
    log = workdir / f"{system}-{rooms}x{clients}.log"
    shards = 1 if rooms * clients <= 50 else 2
    prefix = f"{system}{rooms}x{clients}"
    with process(server_command(system, port, workdir), log=log) as server:
        wait_for_port(port, server)
        server_ps = psutil.Process(server.pid)
        procs = [
            subprocess.Popen(
                python_module(
                    "bench.relay_clients",
                    "--url",
                    f"http://127.0.0.1:{port}",
                    "--room-prefix",
                    prefix,
                    "--rooms",
                    str(rooms),
                    "--clients",
                    str(clients),
                    "--shard",
                    f"{i}/{shards}",
                ),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            for i in range(shards)
        ]
        try:
            for p in procs:
                line = read_line(p, 60)
                if line != "READY":
                    raise RuntimeError(f"client said {line!r}")
            time.sleep(WARMUP_S)
            t0 = time.time() + 0.05
            t1 = t0 + seconds
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(f"{t0} {t1}\n".encode())
                p.stdin.flush()
            time.sleep(max(0.0, t0 - time.time()))
            spy = _profiler(server.pid, seconds, profile, f"{system}-{rooms}x{clients}")
            cpu0 = _cpu(server_ps)
            split0 = server_ps.cpu_times()
            threads0 = _threads(server_ps)
            client_cpu0 = sum(_cpu(psutil.Process(p.pid)) for p in procs)
            time.sleep(max(0.0, t1 - time.time()))
            cpu1 = _cpu(server_ps)
            split1 = server_ps.cpu_times()
            threads1 = _threads(server_ps)
            client_cpu1 = sum(_cpu(psutil.Process(p.pid)) for p in procs)
            reports = [json.loads(read_line(p, 30)) for p in procs]
            if spy is not None:
                spy.wait(30)
        finally:
            for p in procs:
                stop(p)
    if os.environ.get("BENCH_TRACE"):
        print(log.read_text(), file=sys.stderr)
    commits = re.search(r"group commits: (\d+) events: (\d+)", log.read_text())
    return Run(
        system=system,
        events_per_commit=int(commits[2]) / max(int(commits[1]), 1) if commits else None,
        rooms=rooms,
        clients=clients,
        seconds=seconds,
        deliveries=sum(r["deliveries"] for r in reports),
        cpu_seconds=cpu1 - cpu0,
        client_cpu_seconds=client_cpu1 - client_cpu0,
        latencies_ms=[x for r in reports for x in r["latencies_ms"]],
        turnarounds_ms=[x for r in reports for x in r["turnarounds_ms"]],
        errors=[e for r in reports for e in r["errors"]],
        system_cpu_seconds=split1.system - split0.system,
        main_thread_cpu_seconds=threads1.get(server.pid, 0.0) - threads0.get(server.pid, 0.0),
        thread_cpu_seconds=sorted(
            (round(t - threads0.get(tid, 0.0), 3) for tid, t in threads1.items()), reverse=True
        )[:6],
    )


def _profiler(
    pid: int, seconds: float, folder: Path | None, name: str
) -> subprocess.Popen[bytes] | None:
    """py-spy on the server for the window (``--profile DIR``): collapsed stacks per run."""
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [
            *(str(spy), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "200"),
            *("-t", "-f", "raw", "-o", str(folder / f"{name}.txt")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _threads(p: psutil.Process) -> dict[int, float]:
    return {t.id: t.user_time + t.system_time for t in p.threads()}


def _cpu(p: psutil.Process) -> float:
    times = p.cpu_times()
    return float(times.user + times.system)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--shapes", default="1x10,20x5,100x2")
    parser.add_argument("--profile", type=Path, help="py-spy each server into this folder")
    parser.add_argument(
        "--normal-shapes",
        default="20x5,100x2",
        help="shapes also run with TOMCHAT_SQLITE_SYNC=normal ('' for none)",
    )
    args = parser.parse_args()
    started = time.monotonic()
    shapes = [tuple(int(n) for n in s.split("x")) for s in args.shapes.split(",")]
    rows: list[Row] = []
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tomchat-relay-") as tmp:
        for rooms, clients in shapes:
            shape = f"{rooms}x{clients}"
            bare = measure("bare", rooms, clients, args.seconds, Path(tmp), args.profile)
            tom = measure("tomchat", rooms, clients, args.seconds, Path(tmp), args.profile)
            normal = (
                measure("tomchat-normal", rooms, clients, args.seconds, Path(tmp))
                if shape in args.normal_shapes.split(",")
                else None
            )
            for run in (bare, tom, normal):
                if run is not None:
                    runs.append(run.summary())
                    print(json.dumps(run.summary()), file=sys.stderr)
            efficiency = tom.per_cpu_second / bare.per_cpu_second
            p99_t, p99_b = percentile(tom.latencies_ms, 99), percentile(bare.latencies_ms, 99)
            # Issue 19's targets at 20x5 and 100x2; the first round's at 1x10.
            ratio_target = 0.8 if shape == "1x10" else 0.7
            p99_slack = 10 if shape == "100x2" else 5
            rows += [
                Row(
                    f"relay {shape}: deliveries/s", tom.per_second, bare.per_second, "/s", "", None
                ),
                Row(
                    f"relay {shape}: deliveries per server CPU-s",
                    tom.per_cpu_second,
                    bare.per_cpu_second,
                    "/CPU-s",
                    f"≥ {ratio_target}x",
                    efficiency >= ratio_target,
                ),
                Row(
                    f"relay {shape}: chunk latency p50",
                    percentile(tom.latencies_ms, 50),
                    percentile(bare.latencies_ms, 50),
                    "ms",
                    "",
                    None,
                ),
                Row(
                    f"relay {shape}: chunk latency p99",
                    p99_t,
                    p99_b,
                    "ms",
                    f"≤ ref + {p99_slack} ms",
                    p99_t <= p99_b + p99_slack,
                ),
                Row(
                    f"relay {shape}: a message to its reply's first piece, p50",
                    percentile(tom.turnarounds_ms, 50),
                    percentile(bare.turnarounds_ms, 50),
                    "ms",
                    "",
                    None,
                ),
            ]
            if normal is not None:
                rows += [
                    Row(
                        f"relay {shape}, TOMCHAT_SQLITE_SYNC=normal: deliveries per server CPU-s",
                        normal.per_cpu_second,
                        bare.per_cpu_second,
                        "/CPU-s",
                        "",
                        None,
                    ),
                    Row(
                        f"relay {shape}, TOMCHAT_SQLITE_SYNC=normal: chunk latency p99",
                        percentile(normal.latencies_ms, 99),
                        p99_b,
                        "ms",
                        "",
                        None,
                    ),
                ]
    write_result(
        "relay",
        rows,
        {"runs": runs, "delay_ms": DELAY_MS, "chunks_per_reply": CHUNKS_PER_REPLY},
        started,
    )


if __name__ == "__main__":
    main()

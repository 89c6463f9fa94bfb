"""What every benchmark shares: the results file, the machine it ran on, processes, statistics.

A result is ``bench/results/<name>.json``::

    {"name": "relay", "date": "...", "machine": {...}, "seconds": 93.1,
     "rows": [{"figure": "...", "tomchat": 1.0, "reference": 2.0, "unit": "ms",
               "ratio": 0.5, "target": "≥ 0.8x", "met": false}, ...],
     "details": {...}}

``tomchat`` is what tomchat measured, ``reference`` what its reference measured in the same
run, ``ratio`` is ``tomchat / reference`` (``None`` when there is no reference), ``met`` says
whether the target held (``None`` when there is no target).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import select
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
PROJECT_ROOT = BENCH_DIR.parent


@dataclass
class Row:
    figure: str
    tomchat: float | None
    reference: float | None
    unit: str
    target: str
    met: bool | None
    ratio: float | None = None

    def __post_init__(self) -> None:
        if self.ratio is None and self.tomchat is not None and self.reference:
            self.ratio = self.tomchat / self.reference


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "load_average_1m": round(load[0], 2),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(terse=True),
    }


def write_result(name: str, rows: Sequence[Row], details: dict[str, Any], started: float) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    body = {
        "name": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "seconds": round(time.monotonic() - started, 1),
        "rows": [asdict(r) for r in rows],
        "details": details,
    }
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout} s")


@contextlib.contextmanager
def process(
    args: Sequence[str], env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process (output to ``log``, or discarded), stopped when the block ends."""
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(
        list(args),
        env={**os.environ, **(env or {})},
        cwd=PROJECT_ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        stop(proc)
        if log is not None and not isinstance(out, int):
            out.close()


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after ten seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The child's next line of output, or TimeoutError / EOFError."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no output from {proc.args!r} within {timeout} s")
    line = proc.stdout.readline()
    if not line:
        raise EOFError(f"{proc.args!r} exited with status {proc.wait()}")
    return line.decode().rstrip("\n")


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"

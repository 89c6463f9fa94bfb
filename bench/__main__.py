"""Run every benchmark and print one table: ``python -m bench [NAME…] [--readme]``.

Each benchmark runs as its own process (``python -m bench.<module>``), so one that crashes
or overruns (limit: ``--timeout``, 170 s, more for the few in ``TIMEOUTS``) costs only its
own rows. Every benchmark writes
``bench/results/<name>.json`` (see :mod:`bench.common`); the table is built from those
files, in the order below, and also written to ``bench/results/summary.md``. ``--readme``
puts it in README.md's Performance section (between the ``bench:begin``/``bench:end``
markers). ``--table-only`` runs nothing and rebuilds the table from the files.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from typing import Any

from bench.common import BENCH_DIR, PROJECT_ROOT, RESULTS_DIR

# (results name, module): the benchmarks, in the table's order. Modules not present are skipped.
BENCHES = [
    ("relay", "bench.relay"),
    ("scaleout", "bench.scaleout"),
    ("capacity", "bench.capacity"),
    ("append", "bench.append"),
    ("gil_handoff", "bench.gil_handoff"),
    ("catchup", "bench.catchup"),
    ("voice_latency", "bench.voice_latency"),
    ("export", "bench.export_bench"),
]
# Benchmarks that need longer than ``--timeout``: a search over room counts, several servers.
TIMEOUTS = {"capacity": 600.0, "scaleout": 300.0, "relay": 300.0}
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def available() -> list[tuple[str, str]]:
    return [(n, m) for n, m in BENCHES if (BENCH_DIR / f"{m.split('.')[-1]}.py").exists()]


def run(module: str, timeout: float) -> tuple[bool, float, str]:
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", module],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return False, time.monotonic() - started, f"killed after {timeout:.0f} s"
    tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
    return done.returncode == 0, time.monotonic() - started, tail


def _number(value: Any, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    v = float(value)
    text = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) >= 1 else f"{v:.2g}"
    return f"{text} {unit}".strip()


def table(names: list[str], failed: dict[str, str]) -> str:
    results: list[dict[str, Any]] = []
    for name in names:
        path = RESULTS_DIR / f"{name}.json"
        if path.exists():
            results.append(json.loads(path.read_text()))
    lines = [
        "| figure | tomchat | reference | ratio | target | met? |",
        "|---|---:|---:|---:|---|---|",
    ]
    for result in results:
        for row in result.get("rows", []):
            unit = row.get("unit", "")
            ratio = row.get("ratio")
            met = row.get("met")
            lines.append(
                "| {figure} | {tomchat} | {reference} | {ratio} | {target} | {met} |".format(
                    figure=row["figure"],
                    tomchat=_number(row.get("tomchat"), unit),
                    reference=_number(row.get("reference"), unit),
                    ratio="—" if ratio is None else f"{ratio:.2f}x",
                    target=row.get("target") or "",
                    met="" if met is None else ("yes" if met else "**no**"),
                )
            )
    notes = []
    if results:
        m = results[0]["machine"]
        notes.append(
            f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), shared with other work "
            f"(1-minute load {m['load_average_1m']} when the first benchmark ended); "
            f"Python {m['python']}, SQLite {m['sqlite']}, {m['platform']}."
        )
        runs = ", ".join(
            f"{r['name']} {r['date'].replace('T', ' ').replace('+00:00', ' UTC')} ({r['seconds']:.0f} s)"
            for r in results
        )
        notes.append(f"Runs: {runs}.")
    for name, why in failed.items():
        notes.append(f"**{name} failed in this run** ({why}); its rows, if any, are older.")
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes) + "\n"


def update_readme(body: str) -> None:
    readme = PROJECT_ROOT / "README.md"
    text = readme.read_text()
    block = f"{BEGIN}\n{body}{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n## Performance\n\n" + block + "\n"
    readme.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--timeout", type=float, default=170.0)
    parser.add_argument("--table-only", action="store_true", help="run nothing")
    parser.add_argument("--readme", action="store_true", help="update README's Performance")
    args = parser.parse_args()
    benches = available()
    unknown = set(args.names) - {n for n, _ in benches}
    if unknown:
        parser.error(f"no benchmark named {', '.join(sorted(unknown))}")
    failed: dict[str, str] = {}
    if not args.table_only:
        for name, module in benches:
            if args.names and name not in args.names:
                continue
            print(f"running {module} …", file=sys.stderr, flush=True)
            ok, seconds, tail = run(module, max(args.timeout, TIMEOUTS.get(name, 0.0)))
            print(f"  {'done' if ok else 'FAILED'} in {seconds:.0f} s", file=sys.stderr)
            if not ok:
                failed[name] = tail.splitlines()[-1] if tail else "no output"
                print(tail, file=sys.stderr)
    body = table([n for n, _ in benches], failed)
    (RESULTS_DIR / "summary.md").write_text(body)
    print(body)
    if args.readme:
        update_readme(body)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

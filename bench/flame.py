"""Text summaries of py-spy profiles: ``python -m bench.flame FILE [--top N]``.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;… count``); this prints
the frames that held the CPU themselves (self) and those under which it was spent
(inclusive), each as a share of all samples — the top of a flame graph, as text that fits
in a results directory and a review.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# py-spy names a frame "function (path/to/file.py:line)"; lines vary within a function.
_LINE = re.compile(r":\d+\)$")
_SITE = re.compile(r"(?:site-packages|lib/python3\.\d+)/")


def _frame(raw: str) -> str:
    name = _LINE.sub(")", raw.strip())
    return _SITE.sub("", name)


def summarise(path: Path, top: int = 25, title: str = "") -> str:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if f]
        # The first frame is py-spy's "process/thread" label: skip frames that are not code.
        code = [f for f in frames if "(" in f]
        if not code:
            continue
        total += count
        self_time[code[-1]] += count
        for frame in set(code):
            inclusive[frame] += count
    lines = [f"# {title or path.name}: {total} samples", "", "## self (top frames)", ""]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in self_time.most_common(top)]
    lines += ["", "## inclusive", ""]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.flame")
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    print(summarise(args.file, args.top, args.title), end="")


if __name__ == "__main__":
    main()

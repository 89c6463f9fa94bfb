"""Each hand-written part swapped for a kept library, measured before and after.

``python -m bench.kept_libraries [sse] [durations] [ratelimit] [terminal] [--before REV]``

"Before" is the hand-written module as it was at ``REV`` (default: the commit before the
swaps), loaded from git into a module of its own; "after" is the module in ``src``. Each part
prints its figures, speed and (where they can differ) answers, so the choice to keep a
hand-written part stands on a figure. Nothing here writes results files: this is a one-off
comparison, not one of ``python -m bench``'s tracked benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import struct
import subprocess
import sys
import time
import types
from collections.abc import Callable
from typing import Any

from bench.common import PROJECT_ROOT

BEFORE = "9caa4f0"  # main when the swaps began: ai/sse.py, media/containers.py, ... hand-written


def old_module(path: str, rev: str) -> types.ModuleType:
    """The module at ``src/tomchat/<path>`` as it was at ``rev``."""
    source = subprocess.run(
        ["git", "show", f"{rev}:src/tomchat/{path}"],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    name = "before_" + path.replace("/", "_").removesuffix(".py")
    module = types.ModuleType(name)
    sys.modules[name] = module  # dataclasses look their module up while being made
    exec(compile(source, f"{rev}:{path}", "exec"), module.__dict__)
    return module


def per_call_us(fn: Callable[[], object], *, seconds: float = 0.5) -> float:
    """Best of three runs of as many calls as fit in ``seconds``, in microseconds per call."""
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds / 5:
        fn()
        n += 1
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - started) / n)
    return best * 1e6


def row(what: str, before: float | str, after: float | str, unit: str = "") -> None:
    def show(v: float | str) -> str:
        return f"{v:,.1f}" if isinstance(v, float) else str(v)

    print(f"  {what:<52} {show(before):>14} {show(after):>14} {unit}")


def header(title: str) -> None:
    print(f"\n{title}\n  {'':<52} {'before':>14} {'after':>14}")


# -- SSE -------------------------------------------------------------------------------------


def bench_sse(rev: str) -> None:
    from tomchat.ai import sse as after

    before = old_module("ai/sse.py", rev)
    delta = '{"choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}'
    stream = ("".join(f"data: {delta}\n\n" for _ in range(2000)) + "data: [DONE]\n").encode()
    header("SSE: a 2,000-chunk model reply (last event without a blank line)")
    for size in (1024, 64, 7):
        pieces = [stream[i : i + size] for i in range(0, len(stream), size)]

        def parse(mod: Any, pieces: list[bytes] = pieces) -> list[Any]:
            parser = mod.SSEParser()
            return [e for p in pieces for e in parser.feed(p)] + parser.close()

        old, new = parse(before), parse(after)
        assert [(e.data, e.event) for e in old] == [(e.data, e.event) for e in new]
        assert new[-1].data == "[DONE]"
        row(
            f"µs per event, {size}-byte chunks",
            per_call_us(lambda: parse(before)) / len(old),
            per_call_us(lambda: parse(after)) / len(new),
            "µs",
        )
    print("  events equal, [DONE] without a blank line kept: yes")


# -- durations -------------------------------------------------------------------------------

_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)


def mp3_frame(kbps: int) -> bytes:
    """A silent MPEG-1 layer III frame at 44.1 kHz, mono, no padding."""
    header = bytes([0xFF, 0xFB, _KBPS.index(kbps) << 4, 0xC0])
    return header + bytes(144 * kbps * 1000 // 44100 - 4)


def ogg_page(granule: int, payload: bytes, *, first: bool = False) -> bytes:
    lacing = bytes([255] * (len(payload) // 255) + [len(payload) % 255])
    head = struct.pack("<4sBBqIIIB", b"OggS", 0, 2 if first else 0, granule, 7, 0, 0, len(lacing))
    return head + lacing + payload


def samples() -> dict[str, tuple[str, bytes, int]]:
    frame_ms = 1152 / 44100 * 1000
    cbr = mp3_frame(128) * 1000
    vbr = b"".join(mp3_frame(k) for k in [32, 320, 64, 256] * 250)
    opus_head = b"OpusHead" + bytes([1, 1]) + struct.pack("<HIhB", 312, 48000, 0, 0)
    pages = [ogg_page(i * 960 * 50, bytes(4000)) for i in range(1, 600)]  # 10 min, 24 MB
    opus = ogg_page(0, opus_head, first=True) + ogg_page(0, b"OpusTags" + bytes(8))
    opus += b"".join(pages) + ogg_page(600 * 960 * 50 + 312, bytes(60))
    rate = 16000
    wav = (
        b"RIFF"
        + struct.pack("<I", 36 + 60 * rate * 2)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", 60 * rate * 2)
        + bytes(60 * rate * 2)
    )
    mvhd = bytes(4) + struct.pack(">IIII", 0, 0, 600, 42 * 600) + bytes(80)
    moov = struct.pack(">I4s", 16 + len(mvhd), b"moov")
    moov += struct.pack(">I4s", 8 + len(mvhd), b"mvhd") + mvhd
    m4a = struct.pack(">I4s", 16, b"ftyp") + b"M4A \x00\x00\x00\x00" + moov + bytes(1_000_000)
    return {
        "mp3, 1,000 CBR frames": ("mp3", cbr, round(1000 * frame_ms)),
        "mp3, 1,000 VBR frames, no Xing header": ("mp3", vbr, round(1000 * frame_ms)),
        "mp3, CBR cut inside its last frame": ("mp3", cbr[:-200], round(999 * frame_ms)),
        "ogg opus, 10 min, 24 MB": ("ogg", opus, 600_000),
        "wav, 60 s": ("wav", wav, 60_000),
        "m4a, 42 s": ("m4a", m4a, 42_000),
    }


def bench_durations(rev: str) -> None:
    import mutagen
    from mutagen.mp3 import MP3

    from tomchat.media import containers as after

    before = old_module("media/containers.py", rev)

    def with_mutagen(fmt: str, data: bytes) -> int | None:
        if fmt == "mp3":  # what the swap would have been; ours stayed for MP3
            try:
                return round(MP3(io.BytesIO(data)).info.length * 1000)
            except mutagen.MutagenError:
                return None
        return after.audio_duration_ms(data, fmt)

    header("Audio durations: ms reported (expected) and µs per call")
    for what, (fmt, data, expected) in samples().items():
        old = before.audio_duration_ms(data, fmt)
        new = with_mutagen(fmt, data)
        row(f"{what}: ms (expected {expected:,})", f"{old:,}", f"{new:,}", "ms")
        row(
            f"{what}: time",
            per_call_us(lambda f=fmt, d=data: before.audio_duration_ms(d, f)),
            per_call_us(lambda f=fmt, d=data: with_mutagen(f, d)),
            "µs",
        )


# -- rate limits -----------------------------------------------------------------------------


async def bench_ratelimit(rev: str) -> None:
    import os

    import redis

    from tomchat.domain.limits import Rate
    from tomchat.live import ratelimit as after

    before = old_module("live/ratelimit.py", rev)
    rate = Rate(burst=8, per_second=1.0)  # the messages default
    users = 1000
    header(f"Rate limits: one check of (connection, name), {users:,} users taking turns")
    old = before.Limiter("messages", rate)
    n = 0

    def old_check() -> None:
        nonlocal n
        n += 1
        with contextlib.suppress(before.RateLimited):
            old.check([f"sid-{n % users}", f"user-{n % users}"])

    async def timed(limiter: Any, calls: int = 20_000) -> float:
        started = time.perf_counter()
        for i in range(calls):
            with contextlib.suppress(after.RateLimited):
                await limiter.check([f"sid-{i % users}", f"user-{i % users}"])
        return (time.perf_counter() - started) / calls * 1e6

    memory = after.Limiter("messages", rate, after.RateLimitStores())
    row("µs per check, in memory", per_call_us(old_check), await timed(memory), "µs")
    url = os.environ.get("TOMCHAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"tomchat-bench-{os.getpid()}"
    shared = after.Limiter("messages", rate, after.RateLimitStores(url, prefix))
    row(
        "µs per check, names in Redis (shared by processes)",
        "per process",
        await timed(shared, 5000),
        "µs",
    )
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


# -- terminal --------------------------------------------------------------------------------


def _import_ms(module: str) -> float:
    """A fresh interpreter's cost of importing ``module`` (best of three), in ms."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    runs = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
        for _ in range(3)
    ]
    return min(runs) * 1000


def bench_terminal(rev: str) -> None:
    import rich.progress
    from rich.console import Console

    from tomchat.cli import terminal as after

    before = old_module("cli/terminal.py", rev)
    header("Terminal: progress bar and replay colours")
    # Ours costs nothing to import beyond tomchat itself; rich is loaded on top of that.
    row("extra import, ms: progress bar (ours | rich.progress)", 0.0, _import_ms("rich.progress"))
    row("extra import, ms: replay colours (ours | rich.console)", 0.0, _import_ms("rich.console"))

    def frames(progress_class: Any) -> int:
        out = io.StringIO()
        bar = progress_class(1000, out, clock=iter(range(0, 10**6)).__next__)
        for _ in range(1000):
            bar.advance(1)
        bar.close()
        return out.getvalue().count("\r")

    out = io.StringIO()
    with rich.progress.Progress(console=Console(file=out)) as bar:
        task = bar.add_task("messages", total=1000)
        for _ in range(1000):
            bar.advance(task)
    row(
        "redraws to a non-terminal (a log) over 1,000 steps",
        frames(before.Progress),
        out.getvalue().count("\r"),
        "",
    )
    colour = [
        before.ReplayPrinter(io.StringIO(), color=True),
        after.ReplayPrinter(io.StringIO(), color=True),
    ]
    spans = [
        p.style.ai("Tom") + p.style.dim("[12:00:00]") + p.style.mark("[stopped]") for p in colour
    ]
    row(
        "same colour codes (bold cyan, dim, yellow)",
        "yes" if spans[0] == spans[1] else "no",
        "",
        "",
    )
    row(
        "µs per styled span",
        per_call_us(lambda: colour[0].style.ai("Tom")),
        per_call_us(lambda: colour[1].style.ai("Tom")),
        "µs",
    )


PARTS: dict[str, Callable[[str], Any]] = {
    "sse": bench_sse,
    "durations": bench_durations,
    "ratelimit": bench_ratelimit,
    "terminal": bench_terminal,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", choices=list(PARTS))
    parser.add_argument("--before", default=BEFORE, help="git revision of the hand-written parts")
    args = parser.parse_args()
    for name in args.parts or PARTS:
        result = PARTS[name](args.before)
        if asyncio.iscoroutine(result):
            asyncio.run(result)


if __name__ == "__main__":
    main()

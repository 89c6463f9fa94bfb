"""Process-wide settings of the Python runtime that a tomchat server runs with.

**The garbage collector.** Python's cyclic collector runs a young-generation pass every 700
net allocations and, every 10 of those, an older one; a server streaming replies keeps
thousands of objects alive (sockets, tasks, their frames, queued events), so at fifty chunks
a second per room those passes walked the same long-lived objects over and over. Measured in
``bench.append``: with a thousand concurrent appenders, 8.6 µs of CPU per event under the
default thresholds, 4.7 µs with a young generation of 10,000 (about what no collector at all
gives). Cycles are still collected, a little later: what waits meanwhile is at most that
many young objects.

**The GIL's switch interval.** The event loop's thread hands work to others — the SQLite
writer thread, aiosqlite's reader threads — and every SQLite call there lets go of the GIL
and must take it back. A thread asking for the GIL gets it only when the holder is made to
drop it, after the switch interval (5 ms by default): while the loop is busy, a write
transaction of six statements waited ~36 ms for the GIL and one inserting twenty rows row by
row 220 ms (``python -m bench.gil_handoff``; 0.5 ms: 4.6 and 7 ms), and those waits were the
relay's tail latency. At 0.5 ms the loop yields sooner to a waiting thread; when no thread
waits nothing changes.
"""

from __future__ import annotations

import gc
import sys

GC_THRESHOLDS = (10_000, 10, 10)
SWITCH_INTERVAL_SECONDS = 0.0005


def tune_runtime() -> None:
    """Collect less often and hand the GIL over sooner (see the module's note); harmless to
    call more than once."""
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)

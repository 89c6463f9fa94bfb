"""Replaying a room's log with its original timing.

``pause`` is the whole pacing rule, pure and tested on its own: the wait before an event is
the gap between its ``recorded_at`` and the previous one's, divided by the speed, capped at
``max_pause``. ``paced`` applies it to pages of events as they are read, for the SSE route
and the terminal player alike.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from tomchat.domain.events import RecordedEvent

# A replay that falls further behind its schedule than this (a slow reader, a slow page of
# the log) starts its schedule afresh instead of rushing the events out to catch up: the
# gaps are the point of a replay. Smaller lags are made up, so sleeps do not drift.
MAX_LAG = 0.1


def pause(previous: datetime | None, at: datetime, speed: float, max_pause: float) -> float:
    """Seconds to wait before an event recorded at ``at`` that follows one at ``previous``.

    The first event plays at once; a clock that went backwards gives no wait, not a negative
    one.
    """
    if not speed > 0 or math.isinf(speed):
        raise ValueError("speed must be a positive number")
    if not max_pause >= 0:
        raise ValueError("max_pause must be zero or more")
    if previous is None:
        return 0.0
    gap = (at - previous).total_seconds()
    return min(max(gap, 0.0) / speed, max_pause)


def pauses(
    times: Iterable[datetime], speed: float, max_pause: float, previous: datetime | None = None
) -> Iterator[float]:
    """``pause`` along a sequence of recorded times."""
    for at in times:
        yield pause(previous, at, speed, max_pause)
        previous = at


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """Yielded by ``paced`` every ``keepalive`` seconds of a long wait."""

    waited: float


async def paced(
    pages: AsyncIterable[Sequence[RecordedEvent]],
    speed: float,
    max_pause: float,
    *,
    keepalive: float | None = None,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[RecordedEvent | KeepAlive]:
    """The events of ``pages``, each one yielded when its turn comes.

    Waits run on a schedule (start + the sum of the pauses), not one sleep after another,
    so a long replay keeps its total length instead of gaining each sleep's overshoot.
    """
    now = clock or asyncio.get_running_loop().time
    previous: datetime | None = None
    due: float | None = None
    async for page in pages:
        for recorded in page:
            wait = pause(previous, recorded.recorded_at, speed, max_pause)
            previous = recorded.recorded_at
            current = now()
            due = current if due is None else due + wait
            if current - due > MAX_LAG:
                due = current
            started = current
            while (left := due - now()) > 0:
                if keepalive is not None and left > keepalive:
                    await asyncio.sleep(keepalive)
                    yield KeepAlive(now() - started)
                else:
                    await asyncio.sleep(left)
            yield recorded

"""Replay: the pacing rule on its own, then the SSE route against sessions with known gaps."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import RunningServer
from tests.support.room_client import RoomClient
from tests.support.sessions import gapped_session, record
from tests.support.sse import SseEvent, read_events
from tomchat.domain.events import MessagePosted, RecordedEvent
from tomchat.domain.pacing import KeepAlive, paced, pause, pauses
from tomchat.http import replay as replay_route

pytestmark = pytest.mark.timeout(60)

T = datetime(2026, 1, 1, tzinfo=UTC)
# Timer and scheduling noise on a shared two-core machine, in seconds.
TOLERANCE = 0.09


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


# -- the rule ----------------------------------------------------------------------------------


def test_pause_is_the_gap_over_speed_capped() -> None:
    assert pause(None, at(5), 1, 2) == 0.0  # the first event plays at once
    assert pause(at(0), at(1.5), 1, 2) == 1.5
    assert pause(at(0), at(1.5), 3, 2) == 0.5
    assert pause(at(0), at(10), 4, 2) == 2.0  # capped
    assert pause(at(0), at(10), 0.5, 30) == 20.0  # slower than life
    assert pause(at(0), at(0), 1, 2) == 0.0  # one append, several events
    assert pause(at(5), at(4), 1, 2) == 0.0  # a clock that stepped back
    assert pause(at(0), at(3), 1, 0) == 0.0  # no pauses at all
    assert list(pauses([at(0), at(1), at(1), at(9), at(9.5)], 2, 3)) == [0, 0.5, 0, 3, 0.25]
    assert list(pauses([at(2)], 1, 5, previous=at(0))) == [2.0]
    for speed in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="speed"):
            pause(at(0), at(1), speed, 2)
    with pytest.raises(ValueError, match="max_pause"):
        pause(at(0), at(1), 1, -1)


def recorded(version: int, seconds: float) -> RecordedEvent:
    import uuid

    return RecordedEvent(
        position=version,
        room_id="r",
        version=version,
        event_id=uuid.uuid4(),
        recorded_at=at(seconds),
        event=MessagePosted(message_id=f"m{version}", username="ann", content=""),
    )


async def pages_of(*times: float, size: int = 2) -> AsyncIterator[list[RecordedEvent]]:
    events = [recorded(i + 1, t) for i, t in enumerate(times)]
    for start in range(0, len(events), size):
        yield events[start : start + size]


def gaps(moments: Sequence[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(moments)]


def assert_gaps(got: Sequence[float], want: Sequence[float]) -> None:
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want, strict=True):
        assert abs(g - w) <= TOLERANCE, (got, want)


async def test_paced_keeps_the_schedule_across_pages() -> None:
    moments: list[float] = []
    async for item in paced(pages_of(0, 0.3, 0.3, 0.9, 60), speed=2, max_pause=0.4):
        assert isinstance(item, RecordedEvent)
        moments.append(time.monotonic())
    assert_gaps(gaps(moments), [0.15, 0, 0.3, 0.4])


async def test_a_slow_reader_gets_the_gaps_not_a_burst() -> None:
    moments: list[float] = []
    async for item in paced(pages_of(0, 0.2, 0.4, 0.6), speed=1, max_pause=1):
        assert isinstance(item, RecordedEvent)
        moments.append(time.monotonic())
        if item.version == 1:
            await asyncio.sleep(0.5)  # the reader stalls for longer than the next gaps
    assert_gaps(gaps(moments), [0.5, 0.2, 0.2])


async def test_long_waits_yield_keepalives() -> None:
    items = [i async for i in paced(pages_of(0, 100), 1, 0.35, keepalive=0.1)]
    assert [type(i) for i in items] == [
        RecordedEvent,
        KeepAlive,
        KeepAlive,
        KeepAlive,
        RecordedEvent,
    ]
    assert [round(i.waited, 1) for i in items if isinstance(i, KeepAlive)] == [0.1, 0.2, 0.3]


# -- the SSE route -----------------------------------------------------------------------------


async def replay(
    http: httpx.AsyncClient,
    room: str,
    *,
    stop_after: int | None = None,
    headers: dict[str, str] | None = None,
    **params: float,
) -> tuple[list[SseEvent], float]:
    """The events of one connection (up to id ``stop_after``) and when the request began."""
    got: list[SseEvent] = []
    began = time.monotonic()
    async with http.stream("GET", f"/api/rooms/{room}/replay", params=params, headers=headers) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["cache-control"] == "no-cache"
        async for event in read_events(r):
            got.append(event)
            if stop_after is not None and event.id == str(stop_after):
                break
    return got, began


def logged(events: list[SseEvent]) -> list[SseEvent]:
    return [e for e in events if e.event == "message"]


async def test_replay_follows_the_original_gaps_over_speed(server: RunningServer) -> None:
    # Messages 0.6 s, 1.2 s, 2.4 s and 40 s apart; at 3x that is 0.2, 0.4, 0.8 and 13.3 s,
    # and the last two are capped at maxPause.
    await record(server.services.store, "gaps", gapped_session([0.6, 1.2, 2.4, 40]))
    async with httpx.AsyncClient(base_url=server.url) as http:
        events, began = await replay(http, "gaps", speed=3, maxPause=0.5)
        log = (await http.get("/api/rooms/gaps/events")).json()["events"]
    # The recorded session ends with messages nobody answered: the server's watchdog may
    # answer them while the replay runs (its reply is replayed too if it came first).
    sent = logged(events)
    assert [e.id for e in sent][:5] == ["1", "2", "3", "4", "5"]
    assert [e.json() for e in sent] == log[: len(sent)]  # the same raw events as /events
    assert sent[0].at - began < 0.3  # the first one at once
    assert_gaps(gaps([e.at for e in sent[:5]]), [0.2, 0.4, 0.5, 0.5])
    assert events[-1].event == "end" and events[-1].json() == {"version": len(sent)}


async def test_events_of_one_append_arrive_together(server: RunningServer) -> None:
    await record(server.services.store, "books")
    async with httpx.AsyncClient(base_url=server.url) as http:
        events, _ = await replay(http, "books", speed=4, maxPause=0.3)
    sent = logged(events)
    assert [int(e.id or 0) for e in sent] == list(range(1, 17))
    # Versions 1-3 were one append; then 1.5 s, 0.5, 0.25, 0.25, 0.25, 0.25, 7, 0.5, 0.5,
    # 0.25, 0.25, a day, 1 s of original time: over 4, capped at 0.3.
    want = [0, 0, 0.3, 0.125, 0.0625, 0.0625, 0.0625, 0.0625, 0.3, 0.125, 0.125, 0.0625]
    want += [0.0625, 0.3, 0.25]
    assert_gaps(gaps([e.at for e in sent]), want)
    assert sum(gaps([e.at for e in sent])) == pytest.approx(sum(want), abs=TOLERANCE)


async def test_after_and_last_event_id_resume(server: RunningServer) -> None:
    await record(server.services.store, "gaps", gapped_session([0.3] * 6))
    async with httpx.AsyncClient(base_url=server.url) as http:
        later, began = await replay(http, "gaps", speed=2, maxPause=1, after=4)
        assert [e.id for e in logged(later)] == ["5", "6", "7"]
        assert logged(later)[0].at - began < 0.3  # resuming does not wait for the old gap
        assert_gaps(gaps([e.at for e in logged(later)]), [0.15, 0.15])

        # A dropped connection: the client comes back with Last-Event-ID, which wins over
        # the `after` of the URL it repeats, as EventSource does.
        first, _ = await replay(http, "gaps", speed=20, maxPause=1, stop_after=3)
        rest, _ = await replay(
            http, "gaps", speed=20, maxPause=1, after=0, headers={"Last-Event-ID": "3"}
        )
        ids = [e.id for e in logged(first) + logged(rest)]
        assert ids == ["1", "2", "3", "4", "5", "6", "7"]
        assert rest[-1].event == "end"

        # Past the end: nothing to play, just the end.
        done, _ = await replay(http, "gaps", after=7)
        assert [e.event for e in done] == ["", "end"] and done[1].json() == {"version": 7}


async def test_keepalive_comments_during_long_waits(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay_route, "KEEPALIVE_SECONDS", 0.1)
    await record(server.services.store, "gaps", gapped_session([30]))
    async with httpx.AsyncClient(base_url=server.url) as http:
        events, _ = await replay(http, "gaps", speed=1, maxPause=0.45)
    assert events[0].comments == ["replay of gaps after version 0"]
    kinds = [e.event or f": {e.comments[0]}" for e in events[1:]]
    assert kinds == ["message", *[": keep-alive"] * 4, "message", "end"]


async def test_replay_of_a_live_session_types_the_reply_as_it_was(server: RunningServer) -> None:
    """A real reply from the demo character, then its replay at double speed."""
    ann = RoomClient(server.url, "live", "ann")
    await ann.connect()
    await ann.join()
    await ann.send("Tell me about the sea")
    await ann.wait_for(
        lambda c: any(x.is_ai and x.status == "complete" for x in list(c.lines.values())[1:])
    )
    await ann.disconnect()
    log = await server.services.store.read_stream("live")
    want = sum(pauses([e.recorded_at for e in log], 2, 1))
    async with httpx.AsyncClient(base_url=server.url) as http:
        events, _ = await replay(http, "live", speed=2, maxPause=1)
    sent = logged(events)
    assert [int(e.id or 0) for e in sent] == [e.version for e in log]
    chunks = [e.json()["data"]["text"] for e in sent if e.json()["type"] == "reply.chunk"]
    [done] = [e.json()["data"] for e in sent[4:] if e.json()["type"] == "reply.completed"]
    assert len(chunks) > 3 and "".join(chunks) == done["content"]
    assert sent[-1].at - sent[0].at == pytest.approx(want, abs=0.15)

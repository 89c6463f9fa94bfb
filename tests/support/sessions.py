"""Recorded sessions with known content and known times, written through ``EventStore.append``.

Every event gets a chosen ``recorded_at``, so exports can be compared with exact text and
replays with exact gaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from tomchat.domain.events import (
    Event,
    MessagePosted,
    ReplyAudio,
    ReplyChunk,
    ReplyCompleted,
    ReplyStarted,
    RoomCreated,
)
from tomchat.store.event_store import EventStore

T0 = datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)

# (seconds after T0, events appended together at that moment)
BOOK_CLUB: list[tuple[float, list[Event]]] = [
    (
        0,
        [
            RoomCreated(name="Book *club*", character="Tom"),
            ReplyStarted(message_id="g1", character="Tom"),
            ReplyCompleted(message_id="g1", content="Hello, I'm Tom.", status="complete"),
        ],
    ),
    (
        1.5,
        [MessagePosted(message_id="m1", username="ann_b", content="Hello Tom\n\nHow are *you*?")],
    ),
    (2.0, [ReplyStarted(message_id="r1", character="Tom", in_reply_to=("m1",))]),
    (2.25, [ReplyChunk(message_id="r1", index=0, text="I am ")]),
    (2.5, [ReplyChunk(message_id="r1", index=1, text="fine.")]),
    (
        2.75,
        [ReplyAudio(message_id="r1", audio_url="/media/r1-voice-0123456789ab.mp3", format="mp3")],
    ),
    (3.0, [ReplyCompleted(message_id="r1", content="I am fine.", status="complete")]),
    (
        10.0,
        [
            MessagePosted(
                message_id="m2",
                username="bob",
                content="Tell me about whales",
                source="voice",
                audio_url="/media/bob-voice-0123456789.webm",
            )
        ],
    ),
    (10.5, [ReplyStarted(message_id="r2", character="Tom", in_reply_to=("m2",))]),
    (11.0, [ReplyChunk(message_id="r2", index=0, text="Whales are")]),
    (11.25, [MessagePosted(message_id="m3", username="ann_b", content="stop")]),
    (11.5, [ReplyCompleted(message_id="r2", content="Whales are", status="stopped")]),
    # The next day: the model was down.
    (86_400.0, [ReplyStarted(message_id="r3", character="Tom", in_reply_to=("m3",))]),
    (
        86_401.0,
        [ReplyCompleted(message_id="r3", content="", status="failed", error="model unavailable")],
    ),
]


async def record(
    store: EventStore,
    room_id: str,
    session: Sequence[tuple[float, list[Event]]] = BOOK_CLUB,
    t0: datetime = T0,
) -> None:
    for offset, events in session:
        await store.append(room_id, events, recorded_at=t0 + timedelta(seconds=offset))


def gapped_session(gaps: Sequence[float]) -> list[tuple[float, list[Event]]]:
    """A room whose user messages are ``gaps`` seconds apart (one event per message)."""
    session: list[tuple[float, list[Event]]] = [(0.0, [RoomCreated(name="Gaps", character="Tom")])]
    at = 0.0
    for i, gap in enumerate(gaps):
        at += gap
        session.append(
            (at, [MessagePosted(message_id=f"g{i}", username="ann", content=f"after {gap}s")])
        )
    return session

"""The ``Recorder`` contract, once, run against every backend.

``RecorderContract`` holds the tests and an abstract factory (``database_url``); each backend
is a subclass that says how to make its database (the pattern of the ``eventsourcing``
library's ``tests/persistence.py``). A new backend passes when its subclass here does.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from tomchat.cluster.bus import ProcessIdentity
from tomchat.domain.events import (
    CastMember,
    Event,
    MemorySummarized,
    MessageEdited,
    MessageImported,
    MessagePosted,
    MessageRedacted,
    NewEvent,
    RecordedEvent,
    ReplyAudio,
    ReplyChosen,
    ReplyChunk,
    ReplyCompleted,
    ReplyStarted,
    RoomCreated,
    RoomForked,
)
from tomchat.domain.transcript import POSTED, STREAMING, Transcript
from tomchat.store.database import Database
from tomchat.store.leases import ReplyLeases
from tomchat.store.migrate import upgrade_async
from tomchat.store.placement import (
    Append,
    ConcurrencyError,
    IdempotencyConflict,
    LeaseLost,
    Outcomes,
)
from tomchat.store.recorders import PostgresRecorder, Recorder, SqliteRecorder
from tomchat.store.rooms import _message
from tomchat.store.schema import events, messages, streams
from tomchat.store.transcripts import _RAW_COLUMNS

pytestmark = pytest.mark.timeout(60)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def request(
    room_id: str,
    new: list[NewEvent],
    *,
    at: datetime = T0,
    expected_version: int | None = None,
    lease_owner: str | None = None,
) -> Append:
    """An append as callers make it with their own ids (so it is checked for retries)."""
    return Append(room_id, new, expected_version, at, False, lease_owner)


def posted(text: str) -> NewEvent:
    return NewEvent(MessagePosted(message_id=uuid.uuid4().hex, username="ann", content=text))


def records(outcomes: Outcomes, append: Append) -> list[RecordedEvent]:
    outcome = outcomes[id(append)]
    assert not isinstance(outcome, BaseException), outcome
    return outcome


async def count_events(db: Database) -> int:
    async with db.snapshot() as conn:
        return int((await conn.execute(select(func.count()).select_from(events))).scalar_one())


class RecorderContract(ABC):
    recorder_type: type[Recorder]

    @abstractmethod
    def database_url(self, request: pytest.FixtureRequest) -> str:
        """A fresh, empty database of this backend (the factory each backend supplies)."""

    @pytest.fixture
    def url(self, request: pytest.FixtureRequest) -> str:
        # A plain fixture: the factory may use sync fixtures that run their own event loop.
        return self.database_url(request)

    @pytest.fixture
    async def db(self, url: str) -> AsyncIterator[Database]:
        await upgrade_async(url)
        database = Database(url)
        yield database
        await database.dispose()

    @pytest.fixture
    def recorder(self, db: Database) -> Recorder:
        return db.recorder

    def test_the_url_chooses_this_backend(self, recorder: Recorder) -> None:
        assert type(recorder) is self.recorder_type

    async def test_versions_are_contiguous_per_room_across_a_batch_of_rooms(
        self, recorder: Recorder
    ) -> None:
        first = [request("a", [posted("a1"), posted("a2")]), request("b", [posted("b1")])]
        await recorder.write(first)
        batch = [
            request("a", [posted("a3")]),
            request("b", [posted("b2"), posted("b3")]),
            request("c", [posted("c1")]),
            request("a", [posted("a4"), posted("a5")]),
        ]
        outcomes, fresh = await recorder.write(batch)
        assert [[r.version for r in records(outcomes, x)] for x in batch] == [
            [3],
            [2, 3],
            [1],
            [4, 5],
        ]
        assert [(r.room_id, r.version) for r in fresh] == [
            ("a", 3),
            ("b", 2),
            ("b", 3),
            ("c", 1),
            ("a", 4),
            ("a", 5),
        ]
        positions = [r.position for r in fresh]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
        assert [r.event.content for r in fresh] == ["a3", "b2", "b3", "c1", "a4", "a5"]  # type: ignore[union-attr]
        for room, head in {"a": 5, "b": 3, "c": 1}.items():
            assert await recorder.head(room) == head
            assert [r.version for r in await recorder.read(room)] == list(range(1, head + 1))
        assert await recorder.read("a", 2) == records(outcomes, batch[0]) + records(
            outcomes, batch[3]
        ), "what a write returns is what a read gives back"

    async def test_a_retried_append_returns_the_originals_and_writes_nothing(
        self, db: Database, recorder: Recorder
    ) -> None:
        new = [posted("one"), posted("two")]
        original = request("r", new)
        outcomes, _ = await recorder.write([original])
        recorded = records(outcomes, original)
        again = request("r", new, at=T0 + timedelta(minutes=5))
        outcomes, fresh = await recorder.write([again])
        assert records(outcomes, again) == recorded
        assert fresh == []
        assert await recorder.head("r") == 2
        assert await count_events(db) == 2
        assert [r.recorded_at for r in await recorder.read("r")] == [T0, T0]

    async def test_a_duplicate_id_the_lookup_skipped_fails_the_batch_and_writes_nothing(
        self, db: Database, recorder: Recorder
    ) -> None:
        # ``fresh`` appends skip the lookup by id: a clash (a bug, or a replay raced past the
        # lookup) is the database's unique index's to catch, reported as SQLAlchemy reports it.
        new = posted("once")
        first = Append("r", [new], None, T0, True, None)
        await recorder.write([first])
        clash = Append("other", [posted("fine"), new], None, T0, True, None)
        with pytest.raises(IntegrityError):
            await recorder.write([clash])
        assert await count_events(db) == 1
        assert await recorder.head("other") in (None, 0)
        # The writer is usable afterwards.
        after = Append("other", [posted("again")], None, T0, True, None)
        outcomes, _ = await recorder.write([after])
        assert [r.version for r in records(outcomes, after)] == [1]

    async def test_the_same_append_twice_in_one_batch_is_written_once(
        self, db: Database, recorder: Recorder
    ) -> None:
        new = [posted("once")]
        first, second = request("r", new), request("r", new)
        outcomes, fresh = await recorder.write([first, second])
        assert records(outcomes, first) == records(outcomes, second) == fresh
        assert [r.version for r in fresh] == [1]
        assert await count_events(db) == 1

    async def test_a_partial_duplicate_is_an_idempotency_conflict(
        self, db: Database, recorder: Recorder
    ) -> None:
        known = posted("known")
        await recorder.write([request("r", [known])])
        mixed = request("r", [known, posted("new")])
        neighbour = request("r", [posted("fine")])
        outcomes, fresh = await recorder.write([mixed, neighbour])
        assert isinstance(outcomes[id(mixed)], IdempotencyConflict)
        assert [r.version for r in records(outcomes, neighbour)] == [2]
        assert [r.event.content for r in fresh] == ["fine"]  # type: ignore[union-attr]
        assert await count_events(db) == 2

    async def test_a_wrong_expected_version_is_a_concurrency_error(
        self, db: Database, recorder: Recorder
    ) -> None:
        await recorder.write([request("r", [posted("1"), posted("2")])])
        stale = request("r", [posted("late")], expected_version=1)
        right = request("r", [posted("on time")], expected_version=2)
        outcomes, _ = await recorder.write([stale, right])
        error = outcomes[id(stale)]
        assert isinstance(error, ConcurrencyError)
        assert (error.room_id, error.expected, error.actual) == ("r", 1, 2)
        assert [r.version for r in records(outcomes, right)] == [3]
        assert await recorder.head("r") == 3
        assert await count_events(db) == 3

    async def test_a_write_under_a_lease_held_by_another_owner_is_lease_lost(
        self, db: Database, recorder: Recorder
    ) -> None:
        me = ProcessIdentity.current()
        holder = ReplyLeases(db, replace(me, owner=f"holder:{me.owner}"))
        assert await holder.acquire("r")
        intruder = request("r", [posted("mine?")], lease_owner=f"intruder:{me.owner}")
        unleased = request("free", [posted("no lease row")], lease_owner=holder.owner)
        owned = request("r", [posted("mine")], lease_owner=holder.owner)
        outcomes, fresh = await recorder.write([intruder, unleased, owned])
        lost = outcomes[id(intruder)]
        assert isinstance(lost, LeaseLost) and lost.room_id == "r"
        assert isinstance(outcomes[id(unleased)], LeaseLost)
        assert [(r.room_id, r.version) for r in records(outcomes, owned)] == [("r", 1)]
        assert [r.event.content for r in fresh] == ["mine"]  # type: ignore[union-attr]
        assert await recorder.head("free") == 0, "the room's stream exists, empty"

    async def test_a_short_write_commits_its_result_or_nothing(
        self, db: Database, recorder: Recorder
    ) -> None:
        await recorder.write([request("r", [posted("one")])])
        bump = update(streams).where(streams.c.room_id == "r").values(name="renamed")

        def rename(conn: Connection) -> int:
            return int(conn.execute(bump).rowcount)

        assert await recorder.write_short(rename) == 1
        fail = update(streams).where(streams.c.room_id == "r").values(name="never")

        def rename_then_fail(conn: Connection) -> None:
            conn.execute(fail)
            raise RuntimeError("after the statement")

        with pytest.raises(RuntimeError, match="after the statement"):
            await recorder.write_short(rename_then_fail)
        async with db.snapshot() as conn:
            query = select(streams.c.name).where(streams.c.room_id == "r")
            assert (await conn.execute(query)).scalar_one() == "renamed"
        # Batches of the log and short writes take turns; neither saw the other half-done.
        await recorder.write([request("r", [posted("two")])])
        assert await recorder.head("r") == 2

    async def test_a_short_read_sees_one_committed_state(self, recorder: Recorder) -> None:
        await recorder.write([request("r", [posted("one"), posted("two")])])

        def both(conn: Connection) -> tuple[int, int]:
            head = conn.execute(select(streams.c.version).where(streams.c.room_id == "r"))
            rows = conn.execute(select(func.count()).select_from(events))
            return head.scalar_one(), rows.scalar_one()

        assert await recorder.read_short(both) == (2, 2)

        def broken(conn: Connection) -> None:
            conn.execute(select(streams.c.version))
            raise LookupError("in the read")

        with pytest.raises(LookupError, match="in the read"):
            await recorder.read_short(broken)
        # Reads go on after a failed one, and see later commits.
        await recorder.write([request("r", [posted("three")])])
        assert await recorder.read_short(both) == (3, 3)
        assert [r.version for r in await recorder.read("r", 1)] == [2, 3]

    async def test_reads_after_limit_upto_head_and_a_missing_room(self, recorder: Recorder) -> None:
        ten = [posted(str(i)) for i in range(1, 11)]
        await recorder.write([request("r", ten), request("other", [posted("x")])])
        assert [r.version for r in await recorder.read("r")] == list(range(1, 11))
        assert [r.version for r in await recorder.read("r", 4)] == list(range(5, 11))
        assert [r.version for r in await recorder.read("r", 4, limit=3)] == [5, 6, 7]
        assert [r.version for r in await recorder.read("r", 4, upto=6)] == [5, 6]
        assert [r.version for r in await recorder.read("r", 2, upto=9, limit=4)] == [3, 4, 5, 6]
        assert await recorder.read("r", 10) == []
        read = await recorder.read("r", 0, limit=1)
        assert read[0].event_id == ten[0].event_id and read[0].event == ten[0].event
        assert read[0].recorded_at == T0 and read[0].recorded_at.tzinfo is not None
        assert await recorder.head("r") == 10
        assert await recorder.head("other") == 1
        assert await recorder.head("nowhere") is None
        assert await recorder.read("nowhere") == []

    async def test_the_projection_rows_equal_the_transcript_fold(
        self, db: Database, recorder: Recorder
    ) -> None:
        def at(seconds: int) -> datetime:
            return T0 + timedelta(seconds=seconds, microseconds=123456)

        created = NewEvent(RoomCreated(name="Tea room", character="Tom"))
        ask = NewEvent(MessagePosted(message_id="m1", username="ann", content="hello"))
        spoken = NewEvent(
            MessagePosted(
                message_id="m2",
                username="bob",
                content="hi by voice",
                source="voice",
                audio_url="/files/a.webm",
            )
        )
        story: list[tuple[int, list[Event]]] = [
            (0, [created.event]),
            (1, [ask.event, spoken.event]),
            (2, [ReplyStarted(message_id="r1", character="Tom", in_reply_to=("m1", "m2"))]),
            (3, [ReplyChunk(message_id="r1", index=i, text=f"w{i} ") for i in range(5)]),
            (
                4,
                [
                    ReplyAudio(message_id="r1", audio_url="/files/r1.mp3", bytes=10),
                    ReplyCompleted(message_id="r1", content="w0 w1 w2 w3 w4", status="complete"),
                    MessagePosted(message_id="m3", username="ann", content="more?"),
                    ReplyStarted(message_id="r2", character="Tom"),
                    ReplyChunk(message_id="r2", index=0, text="still "),
                ],
            ),
        ]
        # Some steps in one batch (a reply started and finished together), some apart.
        await recorder.write(
            [Append("t", [NewEvent(e) for e in story[0][1]], None, at(0), True, None)]
        )
        await recorder.write(
            [
                Append("t", [NewEvent(e) for e in events_], None, at(step), True, None)
                for step, events_ in story[1:]
            ]
        )
        log = await recorder.read("t")
        assert len(log) == 14
        folded = Transcript.fold("t", log)
        async with db.snapshot() as conn:
            rows = [
                _message(r)
                for r in await conn.execute(
                    select(messages)
                    .where(messages.c.room_id == "t")
                    .order_by(messages.c.first_version)
                )
            ]
            room = (await conn.execute(select(streams).where(streams.c.room_id == "t"))).one()
        assert rows == folded.rows
        assert [(r.id, r.status) for r in rows] == [
            ("m1", POSTED),
            ("m2", POSTED),
            ("r1", "complete"),
            ("m3", POSTED),
            ("r2", STREAMING),
        ]
        assert rows[2].audio_url == "/files/r1.mp3" and rows[2].last_version == 11
        assert rows[1].source == "voice" and rows[4].content == "", "chunks are not projected"
        assert (room.name, room.character, room.version) == ("Tea room", "Tom", 14)
        assert (folded.name, folded.character, folded.version) == ("Tea room", "Tom", 14)
        # The raw rows of exports decode to the same values.
        async with db.snapshot() as conn:
            raw = await conn.execute(
                select(*_RAW_COLUMNS)
                .where(messages.c.room_id == "t")
                .order_by(messages.c.first_version)
            )
            assert recorder.message_rows(raw.all()) == folded.rows

    async def test_the_tree_projects_as_the_fold_does(
        self, db: Database, recorder: Recorder
    ) -> None:
        """Alternatives, choices, edits, deletions and imports, in batches and apart."""
        steps: list[list[Event]] = [
            [
                RoomForked(
                    from_room="src",
                    at_version=9,
                    name="Fork",
                    cast=(CastMember(id="tom", name="Tom", revision=1),),
                ),
                MessageImported(
                    message_id="i1", username="ann", is_ai=False, content="old", original_at=T0
                ),
                MessagePosted(message_id="m1", username="ann", content="hello"),
                ReplyStarted(message_id="a1", character="Tom", in_reply_to=("m1",)),
                ReplyCompleted(message_id="a1", content="first", status="complete"),
            ],
            [
                ReplyStarted(
                    message_id="a2", character="Tom", in_reply_to=("m1",), alternative_of="a1"
                ),
                ReplyCompleted(message_id="a2", content="second", status="complete"),
                ReplyStarted(
                    message_id="a3", character="Tom", in_reply_to=("m1",), alternative_of="a1"
                ),
            ],
            [ReplyCompleted(message_id="a3", content="third", status="stopped")],
            [ReplyChosen(message_id="a2"), MessageEdited(message_id="m1", content="hello!")],
            [MessageRedacted(message_id="i1", by="host", reason="spam")],
        ]
        for i, step in enumerate(steps):
            at = T0 + timedelta(seconds=i)
            await recorder.write([Append("f", [NewEvent(e) for e in step], None, at, True, None)])
        folded = Transcript.fold("f", await recorder.read("f"))
        async with db.snapshot() as conn:
            query = (
                select(messages).where(messages.c.room_id == "f").order_by(messages.c.first_version)
            )
            rows = [_message(r) for r in await conn.execute(query)]
            raw = await conn.execute(
                select(*_RAW_COLUMNS)
                .where(messages.c.room_id == "f")
                .order_by(messages.c.first_version)
            )
            assert recorder.message_rows(raw.all()) == rows
            room = (await conn.execute(select(streams).where(streams.c.room_id == "f"))).one()
        assert rows == folded.rows
        assert [(r.id, r.content, r.shown, r.alternative_of) for r in rows] == [
            ("i1", "", True, None),
            ("m1", "hello!", True, None),
            ("a1", "first", False, None),
            ("a2", "second", True, "a1"),
            ("a3", "third", False, "a1"),
        ]
        assert rows[0].deleted and rows[0].created_at == T0 and rows[1].edited
        assert (room.name, room.character) == ("Fork", "Tom")

    async def test_a_redaction_strips_the_words_from_earlier_events_in_its_transaction(
        self, db: Database, recorder: Recorder
    ) -> None:
        word = "xylophonic"
        story: list[Event] = [
            MessagePosted(
                message_id="m1",
                username="ann",
                content="my quixotic secret",
                audio_url="/media/m.webm",
            ),
            ReplyStarted(message_id="r1", character="Tom", in_reply_to=("m1",)),
            ReplyChunk(message_id="r1", index=0, text=f"your {word} "),
            ReplyChunk(message_id="r1", index=1, text="secret"),
            ReplyAudio(message_id="r1", audio_url="/media/r1.mp3"),
            ReplyCompleted(message_id="r1", content=f"your {word} secret", status="complete"),
            MemorySummarized(character_id=None, through_version=6, summary=f"ann: {word}"),
            MessageEdited(message_id="r1", content=f"still {word}"),
            MessagePosted(message_id="m2", username="bob", content="unrelated"),
        ]
        await recorder.write([request("x", [NewEvent(e) for e in story])])
        redact = request("x", [NewEvent(MessageRedacted(message_id="r1", by="ann"))])
        outcomes, _ = await recorder.write([redact])
        assert [r.version for r in records(outcomes, redact)] == [10]
        log = await recorder.read("x")
        assert word not in repr([e.event for e in log])
        assert [type(e.event).__name__ for e in log] == [
            *(type(e).__name__ for e in story),
            "MessageRedacted",
        ], "the facts and their order stay"
        by_version = {e.version: e.event for e in log}
        assert by_version[1] == story[0], "other messages keep their words"
        assert by_version[3] == ReplyChunk(message_id="r1", index=0, text="")
        assert by_version[5] == ReplyAudio(message_id="r1", audio_url=None)
        assert by_version[6] == ReplyCompleted(message_id="r1", content="", status="complete")
        assert by_version[7] == MemorySummarized(character_id=None, through_version=6, summary="")
        assert by_version[9] == story[8]
        async with db.snapshot() as conn:
            stored = [row.data for row in await conn.execute(select(events.c.data))]
            row = (await conn.execute(select(messages).where(messages.c.id == "r1"))).one()
        assert not any(word in data for data in stored)
        assert (row.content, row.deleted, row.audio_url) == ("", True, None)
        # Redacting a user message drops its audio link as well.
        await recorder.write([request("x", [NewEvent(MessageRedacted(message_id="m1", by="ann"))])])
        first = (await recorder.read("x", 0, limit=1))[0].event
        assert first == MessagePosted(message_id="m1", username="ann", content="", audio_url=None)
        async with db.snapshot() as conn:
            assert not any("quixotic" in row.data for row in await conn.execute(select(events)))


class TestSqliteRecorder(RecorderContract):
    recorder_type = SqliteRecorder

    def database_url(self, request: pytest.FixtureRequest) -> str:
        tmp_path: Path = request.getfixturevalue("tmp_path")
        return f"sqlite+aiosqlite:///{tmp_path / 'contract.db'}"


@pytest.mark.postgres
class TestPostgresRecorder(RecorderContract):
    recorder_type = PostgresRecorder

    def database_url(self, request: pytest.FixtureRequest) -> str:
        url: str = request.getfixturevalue("postgres_url")
        return url

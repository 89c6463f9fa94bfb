"""One reply's run, driven directly: a scripted chat model, the log in memory, a recording
voice — no server, no database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest

from tomchat.ai.protocols import ChatModelError, ChatTurn
from tomchat.chat.reply_run import Replier, ReplyRun, prompt_turns
from tomchat.domain.character import Character
from tomchat.domain.events import Event, ReplyChunk, ReplyCompleted, ReplyStarted
from tomchat.domain.transcript import MessageRow
from tomchat.store.event_store import LeaseLost

pytestmark = pytest.mark.timeout(10)

ROOM = "lounge"
TOM = Character(name="Tom", system_prompt="You are Tom.", greeting="Hi!")


def row(message_id: str, author: str, content: str, *, is_ai: bool = False) -> MessageRow:
    now = datetime.now(UTC)
    return MessageRow(
        id=message_id,
        room_id=ROOM,
        author=author,
        is_ai=is_ai,
        content=content,
        status="streaming" if is_ai and not content else "complete",
        source="text",
        audio_url=None,
        created_at=now,
        completed_at=None,
        first_version=1,
        last_version=1,
    )


class ScriptedModel:
    """Yields its script's strings; an exception in the script is raised there, an
    ``asyncio.Event`` is waited for (so a test can act mid-reply)."""

    def __init__(self, *script: str | Exception | asyncio.Event) -> None:
        self.script = script
        self.asked: list[list[ChatTurn]] = []
        self.closed = False  # the upstream request ended (iterator closed)

    async def stream_reply(self, turns: Sequence[ChatTurn]) -> AsyncIterator[str]:
        self.asked.append(list(turns))
        try:
            for step in self.script:
                if isinstance(step, Exception):
                    raise step
                if isinstance(step, asyncio.Event):
                    await step.wait()
                    continue
                await asyncio.sleep(0)
                yield step
        finally:
            self.closed = True

    async def aclose(self) -> None:
        pass


@dataclass
class MemoryLog:
    """The room's log in memory, appended to the way the event store is: refused with
    ``LeaseLost`` once ``lost`` is set."""

    batches: list[list[Event]] = field(default_factory=list)
    lost: bool = False
    fail_with: Exception | None = None
    commits_before_failing: bool = False  # the commit happens, the caller sees an error
    unreadable: bool = False  # asking the log for a reply's text fails
    commit_seconds: float = 0.0

    async def __call__(self, room_id: str, events: Sequence[Event], /) -> None:
        assert room_id == ROOM
        await asyncio.sleep(self.commit_seconds)  # a commit takes a moment
        if self.lost:
            raise LeaseLost(room_id)
        if self.fail_with is not None and any(isinstance(e, ReplyChunk) for e in events):
            if self.commits_before_failing:
                self.batches.append(list(events))
            raise self.fail_with
        self.batches.append(list(events))

    async def reply_text(self, room_id: str, message_id: str) -> str:
        if self.unreadable:
            raise OSError("the database is gone")
        return "".join(c.text for c in self.chunks() if c.message_id == message_id)

    @property
    def events(self) -> list[Event]:
        return [e for batch in self.batches for e in batch]

    def chunks(self) -> list[ReplyChunk]:
        return [e for e in self.events if isinstance(e, ReplyChunk)]

    def completed(self) -> list[ReplyCompleted]:
        return [e for e in self.events if isinstance(e, ReplyCompleted)]


@dataclass
class MemoryHistory:
    rows: list[MessageRow]
    asked: list[tuple[str, int]] = field(default_factory=list)

    async def recent(self, room_id: str, limit: int) -> list[MessageRow]:
        self.asked.append((room_id, limit))
        return self.rows[-limit:]


@dataclass
class RecordingSpeaker:
    room_id: str
    message_id: str
    said: list[str] = field(default_factory=list)
    ended: str | None = None  # "finished" or "aborted"

    def say(self, text: str) -> None:
        assert self.ended is None, "nothing is said after the end"
        self.said.append(text)

    def finish(self) -> None:
        self.ended = self.ended or "finished"

    def abort(self) -> None:
        self.ended = self.ended or "aborted"


@dataclass
class RecordingVoice:
    speakers: list[RecordingSpeaker] = field(default_factory=list)

    def start(self, room_id: str, message_id: str, voice: str | None = None) -> RecordingSpeaker:
        speaker = RecordingSpeaker(room_id, message_id)
        self.speakers.append(speaker)
        return speaker


@dataclass
class Rig:
    model: ScriptedModel
    log: MemoryLog
    history: MemoryHistory
    voice: RecordingVoice
    run: ReplyRun


ANN = row("m1", "ann", "hi Tom")


def rig(model: ScriptedModel, history: Sequence[MessageRow] = (ANN,)) -> Rig:
    log, memory, voice = MemoryLog(), MemoryHistory(list(history)), RecordingVoice()
    replier = Replier(model, TOM, log, memory, voice, context_messages=5, logged=log)
    return Rig(model, log, memory, voice, replier.reply(ROOM, "r1"))


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


async def test_chunks_in_order_then_the_whole_text() -> None:
    r = rig(ScriptedModel("Hel", "", "lo", " there", "!"))
    await r.run.start([ANN])
    await r.run.stream()
    started, *rest = r.log.events
    assert started == ReplyStarted(
        message_id="r1", character="Tom", in_reply_to=("m1",), character_id="tom"
    )
    chunks = r.log.chunks()
    # The model yields everything at once: what waits on the first commit goes as one chunk.
    assert [(c.message_id, c.index, c.text) for c in chunks] == [
        ("r1", 0, "Hel"),
        ("r1", 1, "lo there!"),
    ], "empty pieces are skipped and the indices stay contiguous"
    assert rest[-1] == ReplyCompleted(message_id="r1", content="Hello there!", status="complete")
    assert rest == [*chunks, rest[-1]], "nothing after the completion"
    assert r.history.asked == [(ROOM, 5)]
    assert r.model.asked == [[ChatTurn("system", "You are Tom."), ChatTurn("user", "ann: hi Tom")]]


async def test_waiting_pieces_go_in_one_append() -> None:
    gate = asyncio.Event()
    r = rig(ScriptedModel("a", gate, *"bcdefg"))
    r.log.commit_seconds = 0.05  # commits far slower than the model
    await r.run.start([ANN])
    writing = asyncio.create_task(r.run.stream())
    await until(lambda: len(r.log.chunks()) == 1)
    gate.set()
    await writing
    chunks = r.log.chunks()
    assert "".join(c.text for c in chunks) == "abcdefg"
    assert [c.index for c in chunks] == list(range(len(chunks)))
    chunk_batches = [
        [e.text for e in batch if isinstance(e, ReplyChunk)]
        for batch in r.log.batches
        if isinstance(batch[0], ReplyChunk)
    ]
    assert chunk_batches[0] == ["a"]
    assert all(len(b) == 1 for b in chunk_batches), "one chunk per append"
    assert len(chunk_batches) <= 3, f"pieces waiting on a commit go together: {chunk_batches}"


class PacedModel:
    """Yields its pieces ``seconds`` apart: a model slower than the log's commits."""

    def __init__(self, pieces: Sequence[str], seconds: float) -> None:
        self.pieces, self.seconds = pieces, seconds

    async def stream_reply(self, turns: Sequence[ChatTurn]) -> AsyncIterator[str]:
        for piece in self.pieces:
            await asyncio.sleep(self.seconds)
            yield piece

    async def aclose(self) -> None:
        return None


async def test_a_model_slower_than_commits_gets_a_chunk_per_piece() -> None:
    log, memory = MemoryLog(), MemoryHistory([ANN])
    replier = Replier(PacedModel(["one", " two", " three"], 0.03), TOM, log, memory)
    run = replier.reply(ROOM, "r1")
    await run.start([ANN])
    await run.stream()
    assert [(c.index, c.text) for c in log.chunks()] == [(0, "one"), (1, " two"), (2, " three")]


async def test_several_messages_are_answered_together() -> None:
    history = [
        row("m0", "bob", "morning"),
        row("g", "Tom", "Hey bob", is_ai=True),
        row("m1", "ann", "hi Tom"),
        row("m2", "bob", "and me?"),
        row("r0", "Tom", "", is_ai=True),  # a reply still streaming: no content yet
    ]
    r = rig(ScriptedModel("Hi both"), history)
    await r.run.start(history[2:4])
    await r.run.stream()
    started = r.log.events[0]
    assert isinstance(started, ReplyStarted) and started.in_reply_to == ("m1", "m2")
    assert r.model.asked == [
        [
            ChatTurn("system", "You are Tom."),
            ChatTurn("user", "bob: morning"),
            ChatTurn("assistant", "Hey bob"),
            ChatTurn("user", "ann: hi Tom"),
            ChatTurn("user", "bob: and me?"),
        ]
    ]
    assert r.log.completed() == [
        ReplyCompleted(message_id="r1", content="Hi both", status="complete")
    ]


async def test_stop_keeps_the_text_so_far() -> None:
    gate = asyncio.Event()  # never set: the model would wait forever
    r = rig(ScriptedModel("Hel", "lo", gate, "never said"))
    await r.run.start([ANN])
    writing = asyncio.create_task(r.run.stream())
    await until(lambda: len(r.log.chunks()) == 2)
    r.run.stop()
    await writing
    assert r.log.completed() == [ReplyCompleted(message_id="r1", content="Hello", status="stopped")]
    assert r.model.closed, "stopping ends the upstream request"
    [speaker] = r.voice.speakers
    assert (speaker.said, speaker.ended) == (["Hel", "lo"], "aborted")


async def test_a_stop_before_the_model_starts_still_ends_the_reply() -> None:
    r = rig(ScriptedModel("never", "said"))

    class StopOnceRead(MemoryHistory):
        async def recent(self, room_id: str, limit: int) -> list[MessageRow]:
            # Runs before the producer's first step, which is scheduled after this returns.
            asyncio.get_running_loop().call_soon(r.run.stop)
            return await super().recent(room_id, limit)

    r.run.replier = replace(r.run.replier, history=StopOnceRead([ANN]))
    await r.run.start([ANN])
    await r.run.stream()
    assert r.model.asked == [], "the model never ran"
    assert r.log.completed() == [ReplyCompleted(message_id="r1", content="", status="stopped")]


async def test_interrupted_when_the_process_closes() -> None:
    gate = asyncio.Event()
    r = rig(ScriptedModel("Part", gate))
    await r.run.start([ANN])
    writing = asyncio.create_task(r.run.stream())
    await until(lambda: len(r.log.chunks()) == 1)
    r.run.interrupt()
    await writing
    assert r.log.completed() == [
        ReplyCompleted(message_id="r1", content="Part", status="interrupted")
    ]
    assert r.voice.speakers[0].ended == "aborted"


async def test_a_model_failure_fails_the_reply_with_its_error() -> None:
    r = rig(ScriptedModel("Par", "tial", ChatModelError("the model is over its quota")))
    await r.run.start([ANN])
    await r.run.stream()
    assert r.log.completed() == [
        ReplyCompleted(
            message_id="r1", content="Partial", status="failed", error="the model is over its quota"
        )
    ]
    [speaker] = r.voice.speakers
    assert (speaker.said, speaker.ended) == (["Par", "tial"], "finished"), (
        "a failed reply still says its text so far"
    )


async def test_a_model_crash_names_only_the_error_type() -> None:
    r = rig(ScriptedModel("x", RuntimeError("secret-key-in-message")))
    await r.run.start([ANN])
    await r.run.stream()
    assert r.log.completed() == [
        ReplyCompleted(
            message_id="r1", content="x", status="failed", error="the model failed: RuntimeError"
        )
    ]


async def test_a_write_failure_fails_the_reply_with_the_logged_text() -> None:
    r = rig(ScriptedModel("a", "b"))
    r.log.fail_with = OSError("disk full")
    await r.run.start([ANN])
    await r.run.stream()
    assert r.log.chunks() == []
    assert r.log.completed() == [
        ReplyCompleted(
            message_id="r1",
            content="",  # what the log holds, not what the model said
            status="failed",
            error="the reply could not be saved: OSError",
        )
    ]


async def test_a_write_that_committed_but_failed_keeps_its_text() -> None:
    """A connection cut during the commit: the chunk is in the log though the append
    failed, so the stored text comes from the log."""
    r = rig(ScriptedModel("a", "b"))
    r.log.fail_with = OSError("connection was closed in the middle of operation")
    r.log.commits_before_failing = True
    await r.run.start([ANN])
    await r.run.stream()
    logged = "".join(c.text for c in r.log.chunks())
    assert logged in ("a", "ab")
    [completed] = r.log.completed()
    assert (completed.content, completed.status) == (logged, "failed")


async def test_a_reply_whose_text_cannot_be_read_is_left_for_the_watchdog() -> None:
    r = rig(ScriptedModel("a", "b"))
    r.log.fail_with = OSError("the database is gone")
    r.log.unreadable = True
    await r.run.start([ANN])
    await r.run.stream()
    assert r.log.completed() == [], "left streaming: a guess could disagree with the log"


async def test_a_lease_lost_at_renewal_stops_the_writing() -> None:
    gate = asyncio.Event()
    r = rig(ScriptedModel("mine", gate, "not mine"))
    await r.run.start([ANN])
    writing = asyncio.create_task(r.run.stream())
    await until(lambda: len(r.log.chunks()) == 1)
    written = list(r.log.events)
    # The renewal found the room taken. The log still accepts here, so what follows is the
    # run's own doing: it does not even try to write.
    r.run.lose_lease()
    gate.set()
    await writing
    assert r.run.lease_lost
    assert r.log.events == written, "no chunk and no completion: the new holder closes it"
    assert r.model.closed
    assert r.voice.speakers[0].ended == "aborted"


async def test_a_lease_lost_while_writing_stops_the_run() -> None:
    gate = asyncio.Event()
    r = rig(ScriptedModel("mine", gate, "refused", "never asked for"))
    await r.run.start([ANN])
    writing = asyncio.create_task(r.run.stream())
    await until(lambda: len(r.log.chunks()) == 1)
    written = list(r.log.events)
    r.log.lost = True  # the store refuses our next append: we stalled past the lease
    gate.set()
    await writing
    assert r.run.lease_lost
    assert r.log.events == written
    assert r.model.closed, "the model is not read to its end for nothing"


async def test_the_voice_says_the_text_as_it_streams() -> None:
    r = rig(ScriptedModel("Hello", " ", "there"))
    await r.run.start([ANN])
    await r.run.stream()
    [speaker] = r.voice.speakers
    assert (speaker.room_id, speaker.message_id) == (ROOM, "r1")
    assert speaker.said == ["Hello", " ", "there"]
    assert speaker.ended == "finished"
    assert "".join(speaker.said) == r.log.completed()[0].content


async def test_the_voice_is_silenced_when_the_model_never_runs() -> None:
    class BrokenHistory:
        async def recent(self, room_id: str, limit: int) -> list[MessageRow]:
            raise OSError("database gone")

    log, voice = MemoryLog(), RecordingVoice()
    run = Replier(ScriptedModel("x"), TOM, log, BrokenHistory(), voice).reply(ROOM, "r1")
    with pytest.raises(OSError, match="database gone"):
        await run.stream()
    assert voice.speakers[0].ended == "aborted"
    assert log.events == []


async def test_no_voice_is_fine() -> None:
    log = MemoryLog()
    run = Replier(ScriptedModel("a", "b"), TOM, log, MemoryHistory([ANN])).reply(ROOM)
    await run.start([ANN])
    await run.stream()
    assert [c.text for c in log.chunks()] == ["a", "b"]
    assert log.completed()[0].message_id == run.message_id


def test_prompt_turns_carry_the_example_dialogue() -> None:
    character = Character("Tom", "Be Tom.", "Hi", example_dialogue="ann: hi\nTom: yo")
    turns = prompt_turns(character, [row("m1", "ann", "hey")])
    assert turns == [
        ChatTurn("system", "Be Tom.\n\nExample dialogue:\nann: hi\nTom: yo"),
        ChatTurn("user", "ann: hey"),
    ]

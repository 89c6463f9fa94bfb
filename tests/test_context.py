"""The model context bounded by tokens, and the room's memory of what fell out of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.ai.conftest import LLM_KEY
from tests.ai.test_voice_room import listener
from tests.conftest import RunningServer, start_server
from tests.fakes.llm import FakeLLM, openai_stream
from tests.support.settings import make_settings
from tomchat.ai.protocols import SUMMARY_INSTRUCTION
from tomchat.chat.context import PER_TURN_TOKENS, build_context, count_tokens
from tomchat.domain.events import MemorySummarized
from tomchat.domain.transcript import MessageRow

AT = datetime(2025, 1, 1, tzinfo=UTC)


def row(n: int, author: str, content: str, *, ai: bool = False) -> MessageRow:
    return MessageRow(
        id=f"m{n}",
        room_id="r",
        author=author,
        is_ai=ai,
        content=content,
        status="complete",
        source="text",
        audio_url=None,
        created_at=AT,
        completed_at=AT,
        first_version=n,
        last_version=n,
    )


def cost(turns: list[tuple[str, str]]) -> int:
    return sum(count_tokens(text) + PER_TURN_TOKENS for _, text in turns)


def test_the_counter_works_offline_and_errs_high() -> None:
    text = "It costs $3.50, e.g. at example.com. Dr. Smith agrees!"
    # o200k_base gives 19 tokens for this text; the margin (x1.15) rounds it up.
    assert count_tokens(text) == 22
    assert count_tokens("") == 0


def test_newest_turns_that_fit_after_prompt_and_memory() -> None:
    history = [
        row(i, "ann" if i % 2 else "Tom", f"message number {i} " * 20, ai=not i % 2)
        for i in range(1, 41)
    ]
    context = build_context("You are Tom.", "ann likes boats.", history, budget=600)
    turns = [(t.role, t.content) for t in context.turns]
    assert turns[0] == ("system", "You are Tom.")
    assert turns[1] == (
        "system",
        "What happened earlier in this room (a summary):\nann likes boats.",
    )
    assert context.tokens == cost(turns) <= 600
    # The newest turns, contiguous up to the last, in order.
    assert turns[-1] == ("assistant", history[-1].content)
    kept = len(turns) - 2
    assert 2 <= kept < 40
    assert context.left_out == history[: 40 - kept]
    # One more turn would not have fitted.
    assert cost(turns) + count_tokens(history[-kept - 1].content) + PER_TURN_TOKENS > 600


def test_the_newest_turn_is_sent_even_alone_too_big() -> None:
    history = [row(1, "ann", "hi"), row(2, "bob", "word " * 2000)]
    context = build_context("p", None, history, budget=100)
    assert [t.content for t in context.turns] == ["p", "bob: " + "word " * 2000]
    assert context.left_out == history[:1]


def test_everything_fits_nothing_left_out() -> None:
    history = [row(1, "ann", "hi"), row(2, "Tom", "hello", ai=True), row(3, "ann", "bye")]
    context = build_context("p", None, history, budget=8000)
    assert [t.role for t in context.turns] == ["system", "user", "assistant", "user"]
    assert context.left_out == []


@pytest.fixture
def llm() -> AsyncIterator[FakeLLM]:
    with FakeLLM(authorization=f"Bearer {LLM_KEY}") as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
async def small_window(tmp_path: Path, llm: FakeLLM) -> AsyncIterator[RunningServer]:
    env = {
        "TOMCHAT_LLM": "openai",
        "TOMCHAT_LLM_BASE_URL": f"{llm.url}/v1",
        "TOMCHAT_LLM_API_KEY": LLM_KEY,
        "TOMCHAT_LLM_CONTEXT_TOKENS": "700",
        "TOMCHAT_LLM_MAX_TOKENS": "100",
    }
    settings = make_settings(
        tmp_path,
        env=env,
    )
    running, stop = await start_server(settings)
    yield running
    await stop()


async def test_a_long_room_stays_in_budget_and_remembers(
    small_window: RunningServer, llm: FakeLLM
) -> None:
    llm.default = openai_stream(["Noted, ", "ann."])
    ann = await listener(small_window, "long", "ann")
    for i in range(8):
        await ann.call(
            "sendMessage", {"roomId": "long", "content": f"Story part {i}: " + "boats " * 60}
        )
        await ann.wait_for(lambda c, n=i: len(c.of("aiComplete")) == n + 1)
    await small_window.services.conversation.memory.wait()
    await ann.sio.disconnect()
    log = [e.event for e in await small_window.services.store.read_stream("long")]
    memories = [e for e in log if isinstance(e, MemorySummarized)]
    assert memories and memories[0].summary == "Noted, ann."
    replies = [
        r.json() for r in llm.requests if r.json()["messages"][0]["content"] != SUMMARY_INSTRUCTION
    ]
    summaries = [
        r.json() for r in llm.requests if r.json()["messages"][0]["content"] == SUMMARY_INSTRUCTION
    ]
    assert summaries
    for body in replies + summaries:
        used = sum(count_tokens(m["content"]) + PER_TURN_TOKENS for m in body["messages"])
        assert used <= 600, used
    # Once written, the memory is in later contexts.
    later = replies[-1]["messages"]
    assert later[1] == {
        "role": "system",
        "content": "What happened earlier in this room (a summary):\nNoted, ann.",
    }
    assert later[-1]["content"].startswith("ann: Story part 7")
    await asyncio.sleep(0)

"""How replies end, what is text and what is not: the real httpx client against the fake
OpenAI-compatible server, each stream shape providers actually send."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.ai.conftest import LLM_KEY
from tests.ai.test_openai_compat import TURNS, collect_with_end, openai_model
from tests.fakes.llm import (
    FakeLLM,
    Reply,
    completion_json,
    error_reply,
    json_reply,
    openai_chunk,
    openai_stream,
    runaway_stream,
    sse,
)
from tomchat.ai.openai_compat import OpenAIChatModel, RetryPolicy
from tomchat.ai.protocols import ChatModelError, ReplyEnd
from tomchat.ai.replies import ThinkFilter, bounded
from tomchat.domain.events import TokenUsage
from tomchat.providers import build_chat_model
from tomchat.settings import Settings


async def test_a_normal_ending_keeps_the_finish_reason_and_the_usage(fake_llm: FakeLLM) -> None:
    fake_llm.script(openai_stream(["Hi ", "there."]))
    texts, end = await collect_with_end(openai_model(fake_llm))
    assert texts == ["Hi ", "there."]
    assert end == ReplyEnd("stop", TokenUsage(prompt_tokens=12, completion_tokens=7))
    assert end.status == "complete"


async def test_the_settings_bound_the_reply_and_ask_for_usage(fake_llm: FakeLLM) -> None:
    fake_llm.script(openai_stream(["ok"]))
    settings = Settings(
        llm="openai", llm_base_url=f"{fake_llm.url}/v1", llm_api_key=LLM_KEY, llm_model="m"
    )
    model = build_chat_model(settings)
    assert isinstance(model, OpenAIChatModel)
    await collect_with_end(model)
    body = fake_llm.requests[0].json()
    assert body["max_tokens"] == 800
    assert body["stream_options"] == {"include_usage": True}
    assert "max_completion_tokens" not in body


def test_openai_itself_gets_max_completion_tokens() -> None:
    model = OpenAIChatModel(base_url=None, api_key="sk-x", model="gpt-4o-mini", max_tokens=321)
    body = model._body(TURNS)
    assert body["max_completion_tokens"] == 321
    assert "max_tokens" not in body


async def test_length_is_truncated_with_the_text_kept(fake_llm: FakeLLM) -> None:
    fake_llm.script(openai_stream(["Once upon ", "a time"], finish_reason="length"))
    texts, end = await collect_with_end(openai_model(fake_llm))
    assert "".join(texts) == "Once upon a time"
    assert (end.finish_reason, end.status) == ("length", "truncated")


async def test_content_filter_is_filtered(fake_llm: FakeLLM) -> None:
    fake_llm.script(openai_stream(["I was say"], finish_reason="content_filter"))
    texts, end = await collect_with_end(openai_model(fake_llm))
    assert texts == ["I was say"]
    assert (end.finish_reason, end.status) == ("content_filter", "filtered")


async def test_a_refusal_is_the_content_and_filtered(fake_llm: FakeLLM) -> None:
    fake_llm.script(
        openai_stream([openai_chunk(refusal="I can't "), openai_chunk(refusal="help with that.")])
    )
    texts, end = await collect_with_end(openai_model(fake_llm))
    assert "".join(texts) == "I can't help with that."
    assert end.refused and end.status == "filtered" and end.finish_reason == "stop"


async def test_content_as_a_list_of_parts_is_joined(fake_llm: FakeLLM) -> None:
    parts = [
        {"type": "text", "text": "Two "},
        {"type": "image_url", "image_url": {"url": "data:,"}},
        {"type": "text", "text": "parts."},
    ]
    fake_llm.script(openai_stream([openai_chunk(parts)]))
    texts, end = await collect_with_end(openai_model(fake_llm))
    assert texts == ["Two parts."]
    assert end.status == "complete"


async def test_a_refusal_part_is_filtered(fake_llm: FakeLLM) -> None:
    fake_llm.script(openai_stream([openai_chunk([{"type": "refusal", "refusal": "No."}])]))
    texts, end = await collect_with_end(openai_model(fake_llm))
    assert (texts, end.status) == (["No."], "filtered")


async def test_reasoning_fields_are_never_text(fake_llm: FakeLLM) -> None:
    fake_llm.script(
        openai_stream(
            [
                openai_chunk(reasoning_content="The user greets me. "),
                openai_chunk(reasoning="I should greet back."),
                openai_chunk("Hello!", reasoning_content=" (and be brief)"),
            ]
        )
    )
    texts, _end = await collect_with_end(openai_model(fake_llm))
    assert texts == ["Hello!"]


async def test_inline_think_is_dropped_even_split_across_chunks(fake_llm: FakeLLM) -> None:
    pieces = ["<th", "ink>secret plan: flatter ", "them</thi", "nk>\n\n", "Nice ", "<", "3 you."]
    fake_llm.script(openai_stream(pieces))
    texts, _end = await collect_with_end(openai_model(fake_llm))
    assert "".join(texts) == "Nice <3 you."


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_think_filter_any_cut(size: int) -> None:
    text = "<think>a < b, so </th> is not it</think>\n Answer: a<b <thin and </think> stays."
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    think = ThinkFilter()
    out = "".join(think.feed(p) for p in pieces) + think.close()
    assert out == "Answer: a<b <thin and </think> stays."


def test_think_filter_drops_unfinished_reasoning() -> None:
    think = ThinkFilter()
    assert think.feed("Sure. <think>hmm, wait") == "Sure. "
    assert think.close() == ""


async def test_tool_calls_alone_are_a_failure_not_an_empty_reply(fake_llm: FakeLLM) -> None:
    call = [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}]
    fake_llm.script(
        openai_stream([openai_chunk(tool_calls=call)], finish_reason="tool_calls"),
        openai_stream([openai_chunk("Sure.", tool_calls=call)], finish_reason="tool_calls"),
    )
    model = openai_model(fake_llm)
    try:
        with pytest.raises(ChatModelError, match="tool call"):
            [p async for p in bounded(model.stream_reply(TURNS))]
        got = [p async for p in bounded(model.stream_reply(TURNS))]
    finally:
        await model.aclose()
    assert got == ["Sure.", ReplyEnd("tool_calls", TokenUsage(12, 7))]


async def test_usage_in_the_finish_chunk_and_without_done(fake_llm: FakeLLM) -> None:
    finish = openai_chunk(finish="stop") | {"usage": {"prompt_tokens": 5, "completion_tokens": 1}}
    fake_llm.script(Reply(steps=[sse(openai_chunk("Yo")), sse(finish)]))
    texts, end = await collect_with_end(openai_model(fake_llm))
    assert (texts, end) == (["Yo"], ReplyEnd("stop", TokenUsage(5, 1)))


async def test_a_non_streamed_answer_keeps_its_ending(fake_llm: FakeLLM) -> None:
    answer = completion_json("<think>x</think>Fine.")
    answer["choices"][0]["finish_reason"] = "length"
    fake_llm.script(json_reply(answer))
    texts, end = await collect_with_end(openai_model(fake_llm))
    assert (texts, end) == (["Fine."], ReplyEnd("length", TokenUsage(3, 3)))


async def test_a_runaway_model_is_cut_at_the_cap(fake_llm: FakeLLM) -> None:
    fake_llm.script(runaway_stream("All work and no play. ", 2000))
    model = openai_model(fake_llm)
    try:
        got = [p async for p in bounded(model.stream_reply(TURNS), max_chars=16_000)]
    finally:
        await model.aclose()
    *texts, end = got
    text = "".join(t for t in texts if isinstance(t, str))
    assert len(text) == 16_000
    assert text == ("All work and no play. " * 2000)[:16_000]
    assert end == ReplyEnd("length") and end.status == "truncated"
    # The upstream request was closed at the cap, not left to run on.
    deadline = time.monotonic() + 5
    while not fake_llm.hangups and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert [index for index, _ in fake_llm.hangups] == [0]


async def test_a_bad_request_is_not_retried(fake_llm: FakeLLM) -> None:
    fake_llm.script(error_reply(400, "messages: too long"), openai_stream(["never"]))
    with pytest.raises(ChatModelError, match=r"rejected the request \(HTTP 400\)"):
        await collect_with_end(openai_model(fake_llm))
    assert len(fake_llm.requests) == 1


async def test_retry_after_past_the_deadline_gives_up_at_once(fake_llm: FakeLLM) -> None:
    fake_llm.script(error_reply(429, "slow down", retry_after="30"), openai_stream(["late"]))
    started = time.monotonic()
    with pytest.raises(ChatModelError, match="rate limiting"):
        await collect_with_end(openai_model(fake_llm))
    assert time.monotonic() - started < 2
    assert len(fake_llm.requests) == 1


async def test_retry_after_is_honoured(fake_llm: FakeLLM) -> None:
    fake_llm.script(error_reply(503, "busy", retry_after="0.3"), openai_stream(["back"]))
    await collect_with_end(openai_model(fake_llm))
    first, second = fake_llm.requests
    assert second.received_at - first.received_at >= 0.3


async def test_all_attempts_fit_in_one_deadline(fake_llm: FakeLLM) -> None:
    fake_llm.default = error_reply(503, "down")
    policy = RetryPolicy(attempts=50, base_delay=0.2, max_delay=0.2, deadline=0.9)
    started = time.monotonic()
    with pytest.raises(ChatModelError, match="503"):
        await collect_with_end(openai_model(fake_llm, retry=policy))
    assert time.monotonic() - started < 1.5
    assert 2 <= len(fake_llm.requests) <= 6

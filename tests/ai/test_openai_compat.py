"""The OpenAI-compatible and JanitorAI chat models: real httpx against a scripted server."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from tests.ai.conftest import LLM_KEY
from tests.fakes.llm import (
    USAGE_CHUNK,
    Drop,
    FakeLLM,
    Hang,
    Pause,
    Reply,
    completion_json,
    error_reply,
    janitor_stream,
    joined,
    json_reply,
    openai_chunk,
    openai_stream,
    split_every,
    sse,
)
from tomchat.ai.openai_compat import JanitorChatModel, OpenAIChatModel, RetryPolicy, Timeouts
from tomchat.ai.protocols import ChatModelError, ChatTurn, ReplyEnd

TURNS = [ChatTurn("system", "You are Tom."), ChatTurn("user", "ann: hello")]
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)


def openai_model(fake: FakeLLM, **options: object) -> OpenAIChatModel:
    options.setdefault("retry", FAST_RETRY)
    return OpenAIChatModel(base_url=f"{fake.url}/v1", api_key=LLM_KEY, model="tom-7b", **options)  # type: ignore[arg-type]


def janitor_model(fake: FakeLLM, key: str = LLM_KEY, **options: object) -> JanitorChatModel:
    options.setdefault("retry", FAST_RETRY)
    return JanitorChatModel(url=f"{fake.url}/hackathon/completions", api_key=key, **options)  # type: ignore[arg-type]


async def collect_with_end(
    model: OpenAIChatModel | JanitorChatModel,
) -> tuple[list[str], ReplyEnd]:
    """The text pieces, and the one ending, which must come last."""
    try:
        got = [piece async for piece in model.stream_reply(TURNS)]
    finally:
        await model.aclose()
    *texts, end = got
    assert isinstance(end, ReplyEnd), got
    assert all(isinstance(t, str) for t in texts), got
    return [t for t in texts if isinstance(t, str)], end


async def collect(model: OpenAIChatModel | JanitorChatModel) -> list[str]:
    return (await collect_with_end(model))[0]


async def collect_until_error(
    model: OpenAIChatModel | JanitorChatModel,
) -> tuple[list[str], ChatModelError]:
    got: list[str] = []

    async def read() -> None:
        async for piece in model.stream_reply(TURNS):
            if isinstance(piece, str):
                got.append(piece)

    try:
        with pytest.raises(ChatModelError) as caught:
            await read()
    finally:
        await model.aclose()
    return got, caught.value


# --- OpenAI-compatible -------------------------------------------------------------------


async def test_openai_streams_the_whole_reply_and_sends_the_openai_request(
    fake_llm: FakeLLM,
) -> None:
    fake_llm.script(openai_stream(["Hey ", "ann, ", "good to ", "see you."], keepalive=True))
    assert await collect(openai_model(fake_llm)) == ["Hey ", "ann, ", "good to ", "see you."]
    [request] = fake_llm.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {LLM_KEY}"
    assert "text/event-stream" in request.headers["accept"]
    assert request.json() == {
        "model": "tom-7b",
        "messages": [
            {"role": "system", "content": "You are Tom."},
            {"role": "user", "content": "ann: hello"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize("size", [1, 7, 64])
async def test_openai_stream_cut_at_any_byte(fake_llm: FakeLLM, size: int) -> None:
    # Multi-byte characters and event boundaries split across TCP writes.
    pieces = ["Gr\u00fc\u00df ", "dich, ", "\u2603 ", "\U0001f600!"]
    wire = joined(openai_stream(pieces).steps)
    fake_llm.script(Reply(steps=split_every(wire, size)))
    assert "".join(await collect(openai_model(fake_llm))) == "".join(pieces)


async def test_multi_line_data_and_final_usage_chunk(fake_llm: FakeLLM) -> None:
    # A JSON payload pretty-printed over several data: lines is one event.
    pretty = '{\n"choices": [{"index": 0,\n "delta": {"content": "two lines"}}]\n}'
    steps = [sse(openai_chunk("one ")), sse(pretty), sse(openai_chunk(finish="stop"))]
    steps += [sse(USAGE_CHUNK), b"data: [DONE]\n\n"]
    fake_llm.script(Reply(steps=list(steps)))
    assert await collect(openai_model(fake_llm)) == ["one ", "two lines"]


async def test_full_endpoint_in_base_url_is_accepted(fake_llm: FakeLLM) -> None:
    fake_llm.script(openai_stream(["ok"]))
    model = OpenAIChatModel(
        base_url=f"{fake_llm.url}/v1/chat/completions/", api_key=LLM_KEY, model="m"
    )
    assert await collect(model) == ["ok"]
    assert fake_llm.requests[0].path == "/v1/chat/completions"


async def test_server_that_ignores_stream_true_answers_as_one_chunk(fake_llm: FakeLLM) -> None:
    fake_llm.script(json_reply(completion_json("All at once.")))
    assert await collect(openai_model(fake_llm)) == ["All at once."]


async def test_transient_failures_before_the_first_byte_are_retried(fake_llm: FakeLLM) -> None:
    fake_llm.script(
        error_reply(500, "boom"),
        Reply(drop_before_headers=True),
        error_reply(429, "slow down", retry_after="0.05"),
        openai_stream(["made ", "it"]),
    )
    model = openai_model(fake_llm, retry=RetryPolicy(attempts=4, base_delay=0.01))
    started = time.perf_counter()
    assert await collect(model) == ["made ", "it"]
    assert len(fake_llm.requests) == 4
    # Retry-After was honoured.
    assert time.perf_counter() - started >= 0.05


async def test_retries_are_bounded_and_end_with_a_clear_error(fake_llm: FakeLLM) -> None:
    fake_llm.default = error_reply(503, "overloaded")
    got, error = await collect_until_error(openai_model(fake_llm))
    assert got == []
    assert len(fake_llm.requests) == FAST_RETRY.attempts
    assert "HTTP 503" in str(error)
    assert "after 3 attempts" in str(error)


async def test_unreachable_server_fails_after_retries() -> None:
    with FakeLLM() as fake:
        url = fake.url  # the port is closed once the fake is gone
    model = OpenAIChatModel(base_url=url, api_key=LLM_KEY, model="m", retry=FAST_RETRY)
    got, error = await collect_until_error(model)
    assert got == []
    assert "Could not reach" in str(error)


async def test_wrong_key_is_not_retried(fake_llm: FakeLLM) -> None:
    model = OpenAIChatModel(
        base_url=fake_llm.url, api_key="sk-wrong-key-000000000", model="m", retry=FAST_RETRY
    )
    got, error = await collect_until_error(model)
    assert got == []
    assert len(fake_llm.requests) == 1
    assert "refused the API key (HTTP 401)" in str(error)
    # The fake echoes a masked key, as OpenAI does; not even that fragment comes through.
    assert "sk-fake" not in str(error)
    assert "wrong-key" not in str(error)


async def test_error_event_mid_stream_keeps_the_text_so_far(fake_llm: FakeLLM) -> None:
    steps = openai_stream(["Once ", "upon "], finish=False, usage=False, done=False).steps
    steps.append(sse({"error": {"message": "Provider returned error", "code": 502}}))
    steps.append(sse(openai_chunk("never seen")))
    fake_llm.script(Reply(steps=steps))
    got, error = await collect_until_error(openai_model(fake_llm))
    assert got == ["Once ", "upon "]
    assert "Provider returned error" in str(error)
    assert len(fake_llm.requests) == 1  # mid-stream failures are not retried


async def test_dropped_connection_mid_stream(fake_llm: FakeLLM) -> None:
    steps = openai_stream(["a ", "b "], finish=False, usage=False, done=False).steps
    fake_llm.script(Reply(steps=[*steps, Drop()]))
    got, error = await collect_until_error(openai_model(fake_llm))
    assert got == ["a ", "b "]
    assert "broke" in str(error)
    assert len(fake_llm.requests) == 1


async def test_silence_between_chunks_times_out(fake_llm: FakeLLM) -> None:
    steps = openai_stream(["first "], finish=False, usage=False, done=False).steps
    fake_llm.script(Reply(steps=[*steps, Hang()]))
    model = openai_model(fake_llm, timeouts=Timeouts(read=0.3))
    started = time.perf_counter()
    got, error = await collect_until_error(model)
    assert got == ["first "]
    assert "sent nothing for 0.3s" in str(error)
    assert time.perf_counter() - started < 3


async def test_keepalive_comments_hold_off_the_timeout(fake_llm: FakeLLM) -> None:
    steps: list[bytes | Pause] = [sse(openai_chunk("slow "))]
    for _ in range(4):
        steps += [Pause(0.15), b": OPENROUTER PROCESSING\n\n"]
    steps += [sse(openai_chunk("but fine", finish="stop")), b"data: [DONE]\n\n"]
    fake_llm.script(Reply(steps=list(steps)))
    model = openai_model(fake_llm, timeouts=Timeouts(read=0.4))
    assert await collect(model) == ["slow ", "but fine"]


async def test_openai_stream_ending_without_a_finish_is_a_failure(fake_llm: FakeLLM) -> None:
    fake_llm.script(openai_stream(["cut ", "short"], finish=False, usage=False, done=False))
    got, error = await collect_until_error(openai_model(fake_llm))
    assert got == ["cut ", "short"]
    assert "ended before it finished" in str(error)


async def test_closing_the_reply_closes_the_upstream_request_at_once(fake_llm: FakeLLM) -> None:
    fake_llm.script(openai_stream([f"w{i} " for i in range(200)], delay=0.05))
    model = openai_model(fake_llm)
    stream = model.stream_reply(TURNS)
    assert [await anext(stream), await anext(stream)] == ["w0 ", "w1 "]
    closed_at = time.perf_counter()
    await stream.aclose()
    for _ in range(100):
        if fake_llm.hangups:
            break
        await asyncio.sleep(0.01)
    [(index, seen_at)] = fake_llm.hangups
    assert index == 0
    assert seen_at - closed_at < 0.2
    assert fake_llm.completed == []
    await model.aclose()


async def test_cancelling_the_reading_task_closes_the_upstream_request(fake_llm: FakeLLM) -> None:
    fake_llm.script(openai_stream(["x "] * 200, delay=0.05))
    model = openai_model(fake_llm)
    first = asyncio.Event()

    async def read() -> None:
        async for _ in model.stream_reply(TURNS):
            first.set()

    task = asyncio.create_task(read())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if fake_llm.hangups:
            break
        await asyncio.sleep(0.01)
    assert [i for i, _ in fake_llm.hangups] == [0]
    await model.aclose()


# --- JanitorAI ---------------------------------------------------------------------------


async def test_janitor_content_chunks_and_raw_key(fake_janitor: FakeLLM) -> None:
    fake_janitor.script(janitor_stream(["Hi ", "there", "!"], delay=0.01))
    assert await collect(janitor_model(fake_janitor)) == ["Hi ", "there", "!"]
    [request] = fake_janitor.requests
    assert request.path == "/hackathon/completions"
    assert request.headers["authorization"] == LLM_KEY
    body = request.json()
    assert body["stream"] is True
    assert body["messages"][1] == {"role": "user", "content": "ann: hello"}
    assert set(body) == {"messages", "temperature", "max_tokens", "stream"}


async def test_janitor_key_that_includes_bearer_is_sent_unchanged() -> None:
    with FakeLLM(authorization=f"Bearer {LLM_KEY}") as fake:
        fake.script(janitor_stream(["ok"]))
        assert await collect(janitor_model(fake, key=f"Bearer {LLM_KEY}")) == ["ok"]
        assert fake.requests[0].headers["authorization"] == f"Bearer {LLM_KEY}"


async def test_janitor_accepts_openai_shaped_chunks(fake_janitor: FakeLLM) -> None:
    fake_janitor.script(openai_stream(["Open", "AI ", "shape"]))
    assert await collect(janitor_model(fake_janitor)) == ["Open", "AI ", "shape"]


async def test_janitor_non_streamed_json_is_one_chunk(fake_janitor: FakeLLM) -> None:
    fake_janitor.script(
        json_reply({"content": "All in one go."}), json_reply(completion_json("Or like this."))
    )
    assert await collect(janitor_model(fake_janitor)) == ["All in one go."]
    assert await collect(janitor_model(fake_janitor)) == ["Or like this."]


async def test_janitor_error_mid_stream_keeps_the_text(fake_janitor: FakeLLM) -> None:
    steps = [*janitor_stream(["So ", "far "]).steps, sse({"error": "upstream overloaded"})]
    fake_janitor.script(Reply(steps=steps))
    got, error = await collect_until_error(janitor_model(fake_janitor))
    assert got == ["So ", "far "]
    assert "upstream overloaded" in str(error)


async def test_janitor_429_then_success(fake_janitor: FakeLLM) -> None:
    fake_janitor.script(error_reply(429, "busy"), janitor_stream(["second ", "try"]))
    assert await collect(janitor_model(fake_janitor)) == ["second ", "try"]
    assert len(fake_janitor.requests) == 2


# --- secrets -----------------------------------------------------------------------------


async def test_the_api_key_never_reaches_a_log_line_or_an_error(
    fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_body = {"error": {"message": f"bad key {LLM_KEY} (Bearer {LLM_KEY})", "code": 400}}
    fake_llm.script(
        error_reply(500, f"failed for {LLM_KEY}"),
        json_reply(secret_body, status=400),
    )
    got, error = await collect_until_error(openai_model(fake_llm))
    fake_llm.script(Reply(steps=[sse(openai_chunk("x")), sse({"error": f"key={LLM_KEY}"})]))
    _, mid_error = await collect_until_error(openai_model(fake_llm))
    model = openai_model(fake_llm)
    assert LLM_KEY not in repr(model)
    await model.aclose()
    assert got == []
    for text in (str(error), str(mid_error), caplog.text):
        assert LLM_KEY not in text
        assert LLM_KEY[6:20] not in text
    # The failures were still logged, and say what happened.
    assert "HTTP 500" in caplog.text

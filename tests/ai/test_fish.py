"""Fish Audio live TTS and ASR: the real fish-audio-sdk against the fake Fish server."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence

import pytest
from fishaudio import AsyncFishAudio
from httpx_ws import WebSocketUpgradeError

from tests.fakes.fish import MP3_FRAME_BYTES, Failure, FakeFish
from tomchat.ai.fish import FishSpeech, FishTranscriber
from tomchat.ai.protocols import SpeechError, TranscriberError
from tomchat.ai.sentences import SentenceChunker
from tomchat.domain.codec import decode_event, encode_data
from tomchat.domain.events import ReplyAudio


def speech(fish: FakeFish, **options: object) -> FishSpeech:
    return FishSpeech(
        api_key=options.pop("api_key", fish.api_key),  # type: ignore[arg-type]
        base_url=fish.url,
        voice="tom-voice-id",
        model=options.pop("model", "s2-pro"),  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )


async def pieces(texts: Sequence[str], delay: float = 0.005) -> AsyncIterator[str]:
    for text in texts:
        await asyncio.sleep(delay)
        yield text


async def speak_all(
    tts: FishSpeech, texts: Sequence[str], voice: str | None = None
) -> tuple[bytes, SpeechError | None]:
    audio = bytearray()
    error: SpeechError | None = None
    try:
        async for chunk in tts.speak(pieces(texts), voice):
            audio += chunk
    except SpeechError as caught:
        error = caught
    return bytes(audio), error


# Each case: (text, spans a voice piece must never end inside).
VOICE_CASES = [
    "It costs $3.50 today, which is cheap. I paid $12.99 before.",
    "Bring tools, e.g. a hammer and nails. Then we start.",
    "Dr. Smith will see you now. Please wait in room 4.",
    "The docs are on example.com and www.fish.audio today. Go read them.",
    "Pi is about 3.14159 and e is 2.718. Neat, right?",
    "Well... I suppose so. Fine!",
]
UNBREAKABLE = [
    "$3.50",
    "$12.99",
    "e.g. a",
    "Dr. Smith",
    "example.com",
    "www.fish.audio",
    "3.14159",
    "2.718",
    "Well...",
]


def tokenish(text: str) -> list[str]:
    """Cut like a real tokenizer: words with their space, and each "." a token of its own."""
    return [t for t in re.findall(r" ?[A-Za-z]+|\.|[^A-Za-z.]", text) if t]


@pytest.mark.parametrize("text", VOICE_CASES)
@pytest.mark.parametrize("cut", ["tokens", "words", "chars", "whole"])
def test_sentences_never_end_inside_numbers_abbreviations_or_addresses(text: str, cut: str) -> None:
    words = [w + " " for w in text.split(" ")]
    words[-1] = words[-1][:-1]  # each word with the space after it, as some models send
    pieces = {"tokens": tokenish(text), "words": words, "chars": list(text), "whole": [text]}[cut]
    chunker = SentenceChunker()
    out = [s for p in pieces for s in chunker.feed(p)] + chunker.close()
    assert "".join(out) == text
    ends = {len("".join(out[: i + 1])) for i in range(len(out))}
    for span in UNBREAKABLE:
        at = text.find(span)
        if at >= 0:
            inside = set(range(at + 1, at + len(span)))
            assert not ends & inside, (span, out)
    assert len(out) >= 2  # and the sentences are still cut where they end


def test_a_long_sentence_goes_by_clauses() -> None:
    text = "This sentence, which goes on and on, " * 6 + "ends here. Next"
    chunker = SentenceChunker()
    out = [s for word in text.split(" ") for s in chunker.feed(word + " ")]
    assert out and all(len(s) <= 200 for s in out)
    assert out[0].endswith(", ")


async def test_streams_text_in_and_audio_out(fake_fish: FakeFish) -> None:
    tts = speech(fake_fish)
    texts = ["Hello ann", ", nice to ", "see you. How ", "was the trip?", " Tell me"]
    audio, error = await speak_all(tts, texts)
    await tts.aclose()
    assert error is None
    [session] = fake_fish.sessions
    # Every byte the server sent, in order: frames carry serial numbers.
    assert audio == bytes(session.audio)
    assert len(audio) == session.frames * MP3_FRAME_BYTES
    assert "".join(session.texts) == "".join(texts)
    # Each whole sentence as one text and a flush (once the next one began), then stop.
    assert session.events[0] == "start"
    assert session.events[-2:] == ["flush", "stop"]
    assert session.spoken == ["Hello ann, nice to see you. ", "How was the trip? ", "Tell me"]
    assert session.texts == session.spoken
    assert session.request is not None
    assert session.request["reference_id"] == "tom-voice-id"
    assert session.request["format"] == "mp3"
    assert session.headers["model"] == "s2-pro"
    assert session.headers["authorization"] == f"Bearer {fake_fish.api_key}"
    assert session.finish_sent == "stop"


async def test_voice_argument_overrides_the_default(fake_fish: FakeFish) -> None:
    tts = speech(fake_fish)
    _, error = await speak_all(tts, ["Hi."], voice="card-voice")
    await tts.aclose()
    assert error is None
    assert fake_fish.sessions[0].request is not None
    assert fake_fish.sessions[0].request["reference_id"] == "card-voice"


async def test_audio_starts_while_text_still_streams(fake_fish: FakeFish) -> None:
    tts = speech(fake_fish)
    fed: list[str] = []

    async def slow_text() -> AsyncIterator[str]:
        for text in ["First sentence. ", "Second ", "part ", "comes ", "slowly."]:
            fed.append(text)
            yield text
            await asyncio.sleep(0.1)

    fed_when_audio_began: list[str] | None = None
    async for _ in tts.speak(slow_text()):
        if fed_when_audio_began is None:
            fed_when_audio_began = list(fed)
    await tts.aclose()
    assert fed_when_audio_began is not None
    assert len(fed_when_audio_began) < 5


async def test_error_finish_ends_with_speech_error_after_partial_audio(
    fake_fish: FakeFish,
) -> None:
    fake_fish.failure = "error"
    fake_fish.fail_after_messages = 1
    tts = speech(fake_fish)
    audio, error = await speak_all(tts, ["One sentence here. "] * 4)
    await tts.aclose()
    assert error is not None
    assert str(error) == (
        "Fish Audio ended the live TTS session with an error: synthesis backend failed"
    )
    assert audio == bytes(fake_fish.sessions[0].audio)
    assert audio  # the first audio message did arrive


async def test_an_error_event_is_a_speech_error_with_what_fish_said(fake_fish: FakeFish) -> None:
    fake_fish.failure = "error_event"
    fake_fish.failure_message = "Concurrency limit exceeded"
    tts = speech(fake_fish)
    audio, error = await speak_all(tts, ["One sentence here. "] * 4)
    await tts.aclose()
    assert error is not None
    assert str(error) == (
        "Fish Audio live TTS error: Concurrency limit exceeded {'max_concurrency': 5}"
    )
    assert audio == bytes(fake_fish.sessions[0].audio)
    assert audio


async def test_fish_ending_the_session_before_the_text_keeps_the_audio(
    fake_fish: FakeFish,
) -> None:
    fake_fish.failure = "end"
    fake_fish.fail_after_messages = 1

    async def slow() -> AsyncIterator[str]:
        for _ in range(10):
            yield "One sentence here. "
            await asyncio.sleep(0.05)

    tts = speech(fake_fish)
    audio = bytearray()
    error: SpeechError | None = None
    try:
        async for chunk in tts.speak(slow()):
            audio += chunk
    except SpeechError as caught:
        error = caught
    await tts.aclose()
    assert str(error) == "Fish Audio ended the live TTS session before the reply's text did"
    [session] = fake_fish.sessions
    assert not session.stop_received
    assert bytes(audio) == bytes(session.audio) != b""


async def test_log_events_are_logged_and_the_audio_flows(
    fake_fish: FakeFish, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tomchat.ai.fish")
    fake_fish.logs = ["session 42 on worker b", "using voice tom-voice-id"]
    tts = speech(fake_fish)
    audio, error = await speak_all(tts, ["Hello there. ", "Bye."])
    await tts.aclose()
    assert error is None
    assert audio == bytes(fake_fish.sessions[0].audio) != b""
    said = [r.getMessage() for r in caplog.records if r.name == "tomchat.ai.fish"]
    assert said == [
        "Fish Audio says: session 42 on worker b",
        "Fish Audio says: using voice tom-voice-id",
    ]


async def test_server_closing_mid_stream_is_a_speech_error(fake_fish: FakeFish) -> None:
    fake_fish.failure = "close"
    tts = speech(fake_fish)
    audio, error = await speak_all(tts, ["One sentence here. "] * 4)
    await tts.aclose()
    assert error is not None
    assert str(error) == (
        "Fish Audio closed the live TTS session (code 1011): synthesis backend failed"
    )
    assert audio == bytes(fake_fish.sessions[0].audio)


async def test_silent_server_times_out_after_the_text_ends(fake_fish: FakeFish) -> None:
    fake_fish.failure = "stall"
    fake_fish.fail_after_messages = 0
    tts = speech(fake_fish, idle_timeout=0.3)
    started = time.perf_counter()
    audio, error = await speak_all(tts, ["Nobody hears this. "] * 3)
    await tts.aclose()
    assert audio == b""
    assert error is not None
    assert "no audio for 0.3s" in str(error)
    assert time.perf_counter() - started < 3


async def test_wrong_key_is_a_speech_error_without_the_key(
    fake_fish: FakeFish, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "fish-secret-key-that-must-not-leak"
    tts = speech(fake_fish, api_key=secret)
    audio, error = await speak_all(tts, ["Hello."])
    await tts.aclose()
    assert audio == b""
    assert error is not None
    assert str(error) == "Fish Audio refused the API key (HTTP 401): Invalid api key"
    assert fake_fish.sessions == []
    assert secret not in str(error)
    assert secret not in caplog.text
    assert secret not in repr(tts)


async def test_no_credit_is_said_plainly(fake_fish: FakeFish) -> None:
    fake_fish.refusal = (402, {"message": "Insufficient balance", "status": 402})
    tts = speech(fake_fish)
    audio, error = await speak_all(tts, ["Hello."])
    await tts.aclose()
    assert audio == b""
    assert str(error) == (
        "Fish Audio says the account has no credit left: top up the API balance"
        " (HTTP 402): Insufficient balance"
    )


async def test_the_model_header_is_required(fake_fish: FakeFish) -> None:
    tts = speech(fake_fish, model="")
    audio, error = await speak_all(tts, ["Hello."])
    await tts.aclose()
    assert audio == b""
    assert str(error) == (
        "Fish Audio refused the live TTS connection (HTTP 400): model header is required"
    )
    assert fake_fish.sessions == []


# The fake as the SDK's own reader sees it: each path ends the way the real service's would.
@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (None, None),
        ("error", "WebSocket stream ended with error"),
        ("close", "WebSocket disconnected unexpectedly"),
        ("end", None),
    ],
)
async def test_the_sdks_own_stream_against_the_fake(
    fake_fish: FakeFish, failure: Failure | None, expected: str | None
) -> None:
    fake_fish.failure = failure
    fake_fish.logs = ["a log line the SDK skips"]
    client = AsyncFishAudio(api_key=fake_fish.api_key, base_url=fake_fish.url)

    async def text() -> AsyncIterator[str]:
        for _ in range(4):
            yield "One sentence here. "
            await asyncio.sleep(0.01)

    audio = bytearray()
    raised: BaseException | None = None
    try:
        async for chunk in client.tts.stream_websocket(text(), model="s2-pro"):
            audio += chunk
    except Exception as error:
        raised = error
    await client.close()
    inner = raised
    while isinstance(inner, BaseExceptionGroup):
        inner = inner.exceptions[0]
    assert (str(inner) if inner else None) == expected
    assert bytes(audio) == bytes(fake_fish.sessions[0].audio) != b""


async def test_the_sdk_sees_a_bad_key_as_http_401_json(fake_fish: FakeFish) -> None:
    client = AsyncFishAudio(api_key="wrong-key", base_url=fake_fish.url)

    async def text() -> AsyncIterator[str]:
        yield "Hi."

    with pytest.raises(WebSocketUpgradeError) as caught:
        async for _ in client.tts.stream_websocket(text(), model="s2-pro"):
            pass
    response = caught.value.response
    await client.close()
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"


async def test_failing_text_source_still_speaks_what_came(fake_fish: FakeFish) -> None:
    async def broken() -> AsyncIterator[str]:
        yield "Half a reply. "
        yield "And then"
        raise RuntimeError("the model died")

    tts = speech(fake_fish)
    audio = b"".join([chunk async for chunk in tts.speak(broken())])
    await tts.aclose()
    [session] = fake_fish.sessions
    assert session.spoken == ["Half a reply. ", "And then"]
    assert session.stop_received
    assert audio == bytes(session.audio)


async def test_stopping_early_closes_the_socket_and_leaves_no_task(fake_fish: FakeFish) -> None:
    async def endless() -> AsyncIterator[str]:
        while True:
            yield "More words. "
            await asyncio.sleep(0.02)

    tts = speech(fake_fish)
    before = asyncio.all_tasks()
    stream = tts.speak(endless())
    assert await anext(stream)
    await stream.aclose()
    fake_fish.wait_for(lambda: fake_fish.sessions[0].client_gone)
    await asyncio.sleep(0.05)
    assert asyncio.all_tasks() - before == set()
    await tts.aclose()


# --- ASR ---------------------------------------------------------------------------------


async def test_transcribe_sends_the_audio_and_reads_the_answer(fake_fish: FakeFish) -> None:
    asr = FishTranscriber(api_key=fake_fish.api_key, base_url=fake_fish.url)
    audio = b"OggS" + bytes(range(256)) * 8
    result = await asr.transcribe(audio, "audio/ogg")
    await asr.aclose()
    assert result.text == "Hello Tom, how are you?"
    assert result.duration_ms == 1830
    [call] = fake_fish.asr_calls
    assert call.payload["audio"] == audio
    # We ask for no timestamps, and the answer comes without segments.
    assert call.payload["ignore_timestamps"] is True
    assert call.headers["content-type"] == "application/msgpack"
    assert call.headers["authorization"] == f"Bearer {fake_fish.api_key}"


async def test_the_fake_asr_gives_segments_only_when_asked(fake_fish: FakeFish) -> None:
    client = AsyncFishAudio(api_key=fake_fish.api_key, base_url=fake_fish.url)
    with_times = await client.asr.transcribe(audio=b"RIFF", include_timestamps=True)
    without = await client.asr.transcribe(audio=b"RIFF", include_timestamps=False)
    await client.close()
    assert [(s.text, s.start, s.end) for s in with_times.segments] == [
        ("Hello Tom, how are you?", 0.0, 1.83)
    ]
    assert without.segments == []
    assert [c.payload["ignore_timestamps"] for c in fake_fish.asr_calls] == [False, True]


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "refused the API key"),
        (402, r"no credit left: top up the API balance \(HTTP 402\): Insufficient balance"),
        (429, "rate limiting"),
        (500, r"failed \(HTTP 500\): ASR failed"),
    ],
)
async def test_transcribe_failures(fake_fish: FakeFish, status: int, message: str) -> None:
    key = fake_fish.api_key if status != 401 else "wrong-fish-key-123456"
    fake_fish.asr_status = status
    asr = FishTranscriber(api_key=key, base_url=fake_fish.url)
    with pytest.raises(TranscriberError, match=message) as caught:
        await asr.transcribe(b"RIFF\0\0\0\0WAVE", "audio/wav")
    await asr.aclose()
    assert key not in str(caught.value)


def test_reply_audio_from_before_errors_were_kept_decodes_without_one() -> None:
    old = b'{"message_id":"r","audio_url":null,"format":"mp3","bytes":0,"duration_ms":null}'
    assert decode_event("reply.audio", old) == ReplyAudio(
        message_id="r", audio_url=None, format="mp3", bytes=0, error=None
    )
    cut = ReplyAudio(message_id="r", audio_url="/media/a.mp3", bytes=417, error="cut short")
    data = encode_data(cut)
    assert b'"error":"cut short"' in data
    assert decode_event("reply.audio", data) == cut

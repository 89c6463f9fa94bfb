"""Time to first audio on disk after the first text chunk, the fakes' own latency subtracted.

The reply pipeline runs as the server runs it: the OpenAI-compatible model streaming from the
fake LLM server over httpx, each piece handed to a ``ReplySpeaker`` the moment it arrives,
fish-audio-sdk's live TTS to the fake Fish server, audio written to the media store. Nothing
is timed inside a test; this prints figures and writes ``bench/results/voice_latency.json``.

For each reply:

* ``total``: first text piece received from the model -> first audio bytes on disk;
* ``sentence``: first text piece -> the piece that completes the first sentence handed to
  the speaker: the model's pace, not ours (the voice waits for whole sentences);
* ``fish``: what the fake Fish server itself took, from receiving the text that completed
  the first sentence (its flush) to sending its first audio, including its simulated
  synthesis delay (``--fish-delay-ms``);
* ``tomchat = total - sentence - fish``: the pipeline's own share once the first sentence
  is complete: deciding it is one, getting it to Fish and the audio from Fish onto disk.

    .venv/bin/python -m bench.voice_latency --replies 30
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.fakes.fish import FakeFish
from tests.fakes.llm import FakeLLM, openai_stream

from bench.common import Row, percentile, write_result
from tomchat.ai.fish import FishSpeech
from tomchat.ai.openai_compat import OpenAIChatModel
from tomchat.ai.protocols import ChatTurn
from tomchat.chat.voice import Voice
from tomchat.domain.events import Event
from tomchat.media.files import MediaStore

PIECES = [
    "Hey ",
    "ann, ",
    "good ",
    "to see ",
    "you. ",
    "I was ",
    "just ",
    "thinking ",
    "about ",
    "boats.",
]
# The text up to the end of the first sentence: once the model has sent it, the voice can go.
FIRST_SENTENCE = "Hey ann, good to see you. "


async def one_reply(
    model: OpenAIChatModel, voice: Voice, fish: FakeFish, index: int
) -> dict[str, float]:
    speaker = voice.start("bench", f"reply-{index}")
    said = ""
    sentence_at: float | None = None
    async for piece in model.stream_reply([ChatTurn("user", "ann: hi")]):
        if not isinstance(piece, str):
            continue  # how the reply ended: not text
        said += piece
        if sentence_at is None and len(said) >= len(FIRST_SENTENCE):
            sentence_at = time.perf_counter()
        speaker.say(piece)
    speaker.finish()
    await speaker.wait()
    session = fish.sessions[index]
    assert speaker.first_text_at is not None
    assert speaker.first_audio_at is not None
    assert sentence_at is not None
    assert session.first_audio_at is not None
    assert session.first_audio_trigger_at is not None
    assert session.spoken[0] == FIRST_SENTENCE, session.spoken
    total = speaker.first_audio_at - speaker.first_text_at
    fish_own = session.first_audio_at - session.first_audio_trigger_at
    sentence = sentence_at - speaker.first_text_at
    return {
        "total": total * 1000,
        "fish": fish_own * 1000,
        "sentence": sentence * 1000,
        "tomchat": (total - fish_own - sentence) * 1000,
    }


async def run(replies: int, piece_ms: float, fish_delay_ms: float) -> list[dict[str, float]]:
    events: list[Event] = []

    async def append(_room: str, new: list[Event]) -> None:
        events.extend(new)

    with (
        FakeLLM() as llm,
        FakeFish(first_audio_delay=fish_delay_ms / 1000) as fish,
        tempfile.TemporaryDirectory() as media_dir,
    ):
        llm.default = openai_stream(PIECES, delay=piece_ms / 1000)
        model = OpenAIChatModel(base_url=llm.url, api_key="bench", model="bench")
        speech = FishSpeech(api_key=fish.api_key, base_url=fish.url, voice=None, model="s2-pro")
        voice = Voice(speech, MediaStore(Path(media_dir)), append)
        results = []
        for index in range(replies + 1):
            measured = await one_reply(model, voice, fish, index)
            if index:  # the first warms the connections and the imports
                results.append(measured)
        await voice.aclose()
        await model.aclose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replies", type=int, default=30)
    parser.add_argument("--piece-ms", type=float, default=20.0, help="model pace per piece")
    parser.add_argument("--fish-delay-ms", type=float, default=50.0, help="simulated synthesis")
    args = parser.parse_args(argv)
    started = time.monotonic()
    results = asyncio.run(run(args.replies, args.piece_ms, args.fish_delay_ms))
    rows: list[Row] = []
    summary: dict[str, Any] = {}
    print(
        f"{len(results)} replies, model piece every {args.piece_ms:g} ms, "
        f"Fish synthesis {args.fish_delay_ms:g} ms"
    )
    print(f"{'ms':>10} {'p50':>8} {'p90':>8} {'max':>8} {'mean':>8}")
    for key in ("total", "sentence", "fish", "tomchat"):
        values = [r[key] for r in results]
        p50, p90 = percentile(values, 50), percentile(values, 90)
        summary[key] = {"p50": p50, "p90": p90, "max": max(values), "mean": statistics.mean(values)}
        print(f"{key:>10} {p50:8.1f} {p90:8.1f} {max(values):8.1f} {statistics.mean(values):8.1f}")
    tomchat = summary["tomchat"]
    rows.append(
        Row(
            "first audio on disk after first text, fakes subtracted, p50",
            round(tomchat["p50"], 2),
            None,
            "ms",
            "< 50",
            tomchat["p50"] < 50,
        )
    )
    rows.append(
        Row(
            "first audio on disk after first text, fakes subtracted, p90",
            round(tomchat["p90"], 2),
            None,
            "ms",
            "< 100",
            tomchat["p90"] < 100,
        )
    )
    path = write_result(
        "voice_latency",
        rows,
        {"args": vars(args), "summary": summary, "replies": results},
        started,
    )
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

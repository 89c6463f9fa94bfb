"""Run the fake services on their own, to try a real ``tomchat serve`` without paid APIs.

    .venv/bin/python -m tests.fakes --llm-port 9101 --fish-port 9102

prints the environment that points tomchat at them, then serves until interrupted. Every
reply is the same few sentences, streamed at ``--piece-ms``; Fish answers with silent MP3.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading

from tests.fakes.fish import FakeFish
from tests.fakes.llm import FakeLLM, openai_stream

REPLY = [
    "Hey there, ",
    "I'm the fake model. ",
    "Every word you read ",
    "is streamed over ",
    "server-sent events, ",
    "and Fish speaks it ",
    "sentence by sentence. ",
    "Pretty neat, right?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm-port", type=int, default=0)
    parser.add_argument("--fish-port", type=int, default=0)
    parser.add_argument("--piece-ms", type=float, default=120.0)
    args = parser.parse_args()
    llm, fish = FakeLLM(port=args.llm_port), FakeFish(port=args.fish_port)
    llm.default = openai_stream(REPLY, delay=args.piece_ms / 1000)
    with llm, fish:
        print(f"TOMCHAT_LLM=openai TOMCHAT_LLM_BASE_URL={llm.url}/v1 TOMCHAT_LLM_API_KEY=fake")
        print(f"TOMCHAT_TTS=fish TOMCHAT_ASR=fish FISH_API_KEY={fish.api_key}")
        print(f"TOMCHAT_FISH_BASE_URL={fish.url}", flush=True)
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()


if __name__ == "__main__":
    main()

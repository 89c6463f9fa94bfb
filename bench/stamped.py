"""The demo character with a production timestamp in every chunk, for latency benchmarks.

Both tomchat and the bare relay stream these same chunks at the same pace, so their payloads
are byte for byte the same size and latency is measured from one clock: the moment the model
yields the chunk (``time.time()``, shared by every process on the machine) to its receipt.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Sequence

from tomchat.ai.demo import compose_reply, word_chunks
from tomchat.ai.protocols import ChatTurn

SEPARATOR = "~"


def stamp(piece: str) -> str:
    return f"{piece}{SEPARATOR}{time.time():.6f}"


_STAMP = re.compile(re.escape(SEPARATOR) + r"(\d+\.\d{6})")


def pieces_produced_at(chunk: str) -> list[float]:
    """The production stamps of every piece in ``chunk``: one, or several where tomchat
    coalesced a reply's waiting pieces into one chunk event (``chat.reply_run``)."""
    return [float(s) for s in _STAMP.findall(chunk)]


class StampedDemoModel:
    """The demo's words, repeated to ``chunks`` pieces, ``delay_ms`` apart, each stamped."""

    def __init__(self, delay_ms: int, chunks: int) -> None:
        self.delay = delay_ms / 1000
        self.chunks = chunks

    async def stream_reply(self, turns: Sequence[ChatTurn]) -> AsyncIterator[str]:
        words = word_chunks(compose_reply(turns))
        # Paced against a clock, not by sleeping a fixed time after each piece, so the rate
        # stays 1/delay even when the loop is busy (the same for tomchat and the reference).
        start = time.monotonic()
        for i, piece in enumerate(itertools.islice(itertools.cycle(words), self.chunks)):
            if i:
                await asyncio.sleep(max(0.0, start + i * self.delay - time.monotonic()))
            yield stamp(piece)

    async def aclose(self) -> None:
        return None

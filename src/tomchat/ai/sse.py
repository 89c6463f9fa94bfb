"""Server-Sent Events from bytes cut anywhere, parsed by httpx-sse's decoders.

httpx-sse splits lines (``\\r``, ``\\n``, ``\\r\\n``, a ``\\r`` held over a cut) and interprets
fields. Its ``EventSource`` wants an ``httpx.Response``; the model client reads the first
chunk itself to tell JSON from SSE, so this feeds the same decoders chunk by chunk. What is
ours, and why:

- UTF-8 decoding across cuts and the leading BOM (the standard strips it);
- an event is handed out only if it had a ``data`` line, and ``retry`` stays with the events
  after it, as the standard's "reconnection time" does (httpx-sse hands out data-less events
  when an ``id`` was ever seen and forgets ``retry`` after one event);
- ``close()`` hands out a last event not followed by a blank line: several servers end with
  ``data: [DONE]\\n`` and no blank line, which the standard (and httpx-sse) would drop.
  Whoever reads it must still reject a truncated payload.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

# The decoders are what httpx-sse's own EventSource runs on; they have no public name.
from httpx_sse._decoders import SSEDecoder, SSELineDecoder


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Feed bytes, get events. ``close()`` at end of stream returns a last unterminated event."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._lines = SSELineDecoder()
        self._events = SSEDecoder()
        self._first = True
        self._has_data = False
        self._last_id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        return self._text(self._decoder.decode(chunk))

    def close(self) -> list[ServerSentEvent]:
        events = self._text(self._decoder.decode(b"", final=True))
        for line in [*self._lines.flush(), ""]:  # "": the blank line the stream never sent
            events.extend(self._line(line))
        return events

    def _text(self, text: str) -> list[ServerSentEvent]:
        if self._first and text:
            self._first = False
            text = text.removeprefix("\ufeff")
        if not text:
            return []
        return [event for line in self._lines.decode(text) for event in self._line(line)]

    def _line(self, line: str) -> list[ServerSentEvent]:
        if line.startswith("data") and line[4:5] in ("", ":"):
            self._has_data = True
        sse = self._events.decode(line)
        if sse is None:
            return []
        if sse.id:
            self._last_id = sse.id
        if sse.retry is not None:
            self._retry = sse.retry
        if not self._has_data:
            return []  # a blank line after no data: nothing to dispatch
        self._has_data = False
        return [ServerSentEvent(sse.data, sse.event, self._last_id, self._retry)]


async def aiter_sse(chunks: AsyncIterable[bytes]) -> AsyncIterator[ServerSentEvent]:
    parser = SSEParser()
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    for event in parser.close():
        yield event

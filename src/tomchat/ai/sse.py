"""An incremental Server-Sent Events parser (WHATWG HTML, "Parsing an event stream").

Bytes arrive cut anywhere: inside a line, between ``\\r`` and ``\\n``, inside a multi-byte
UTF-8 character. The parser keeps what it cannot decide yet and hands out whole events.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Feed bytes, get events. ``close()`` at end of stream returns a last unterminated event.

    The standard drops an event that is not followed by a blank line when the stream ends.
    Several servers end with ``data: [DONE]\\n`` and no blank line, so ``close`` hands such an
    event out; whoever reads it must still reject a truncated payload.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._first = True
        self._pending_cr = False
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        return list(self._lines(self._decoder.decode(chunk)))

    def close(self) -> list[ServerSentEvent]:
        text = self._decoder.decode(b"", final=True)
        events = list(self._lines(text))
        if self._buffer:
            line, self._buffer = self._buffer, ""
            events.extend(self._line(line))
        if self._data:
            events.append(self._dispatch())
        return events

    def _lines(self, text: str) -> Iterator[ServerSentEvent]:
        if self._first and text:
            self._first = False
            text = text.removeprefix("\ufeff")
        if self._pending_cr and text.startswith("\n"):
            # The "\r" ending the previous line arrived alone; this "\n" belongs to it.
            text = text[1:]
        self._pending_cr = False
        buffer = self._buffer + text
        start = 0
        length = len(buffer)
        while start < length:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            if cr < 0 and lf < 0:
                break
            if cr < 0 or (0 <= lf < cr):
                end, next_start = lf, lf + 1
            elif cr + 1 < length:
                end = cr
                next_start = cr + 2 if buffer[cr + 1] == "\n" else cr + 1
            else:
                end, next_start = cr, cr + 1
                self._pending_cr = True
            yield from self._line(buffer[start:end])
            start = next_start
        self._buffer = buffer[start:]

    def _line(self, line: str) -> Iterator[ServerSentEvent]:
        if line == "":
            if self._data:
                yield self._dispatch()
            else:
                self._event = ""
            return
        if line.startswith(":"):
            return  # comment: keep-alives such as ": OPENROUTER PROCESSING"
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)

    def _dispatch(self) -> ServerSentEvent:
        event = ServerSentEvent(
            data="\n".join(self._data),
            event=self._event or "message",
            id=self._last_id,
            retry=self._retry,
        )
        self._data = []
        self._event = ""
        return event


async def aiter_sse(chunks: AsyncIterable[bytes]) -> AsyncIterator[ServerSentEvent]:
    parser = SSEParser()
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    for event in parser.close():
        yield event

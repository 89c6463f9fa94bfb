"""What every reply goes through whatever model wrote it: reasoning hidden, a hard length cap,
and exactly one honest ending."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from tomchat.ai.protocols import ChatModelError, ReplyEnd, ReplyPiece

log = logging.getLogger("tomchat.ai.replies")

# Past this a reply is ended ``truncated`` whatever the model does: a looping model must not
# fill the log, the room and the voice for minutes.
MAX_REPLY_CHARS = 16_000


class ThinkFilter:
    """Drops inline ``<think>…</think>`` reasoning from streamed text.

    The tags may arrive cut anywhere across pieces ("<thi", "nk>"), so a tail that could be
    the start of a tag is held back until the next piece decides it. Whitespace right after
    the reasoning (models put a blank line there) is dropped too.
    """

    OPEN = "<think>"
    CLOSE = "</think>"

    def __init__(self) -> None:
        self._inside = False
        self._held = ""
        self._strip_lead = True  # nothing visible yet, or reasoning just ended

    def feed(self, text: str) -> str:
        buffer = self._held + text
        self._held = ""
        out: list[str] = []
        while buffer:
            tag = self.CLOSE if self._inside else self.OPEN
            at = buffer.find(tag)
            if at >= 0:
                if not self._inside:
                    out.append(self._visible(buffer[:at]))
                buffer = buffer[at + len(tag) :]
                self._inside = not self._inside
                if not self._inside:
                    self._strip_lead = True
                continue
            keep = _partial_suffix(buffer, tag)
            if not self._inside:
                out.append(self._visible(buffer[: len(buffer) - keep]))
            self._held = buffer[len(buffer) - keep :]
            break
        return "".join(out)

    def close(self) -> str:
        """The text held back at the end of the stream (a cut-off reasoning block is dropped)."""
        held, self._held = self._held, ""
        return "" if self._inside else self._visible(held)

    @property
    def thinking(self) -> bool:
        return self._inside

    def _visible(self, text: str) -> str:
        if self._strip_lead:
            text = text.lstrip()
            if text:
                self._strip_lead = False
        return text


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of ``text`` that is a proper beginning of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


async def bounded(
    pieces: AsyncIterator[ReplyPiece], max_chars: int = MAX_REPLY_CHARS
) -> AsyncIterator[ReplyPiece]:
    """The model's stream with the cap applied and exactly one :class:`ReplyEnd`, last.

    Past ``max_chars`` the upstream is closed at once and the reply ends ``truncated``
    (finish reason ``length``). A reply with no text at all that claims to be complete
    (tool calls only, reasoning only) is a failure, not an empty ``complete``.
    """
    written = 0
    end: ReplyEnd | None = None
    try:
        async for piece in pieces:
            if isinstance(piece, ReplyEnd):
                end = piece
                continue
            if not piece:
                continue
            room = max_chars - written
            if len(piece) > room:
                if room:
                    yield piece[:room]
                written += room
                log.warning("reply passed %d characters: cut", max_chars)
                yield ReplyEnd("length", end.usage if end else None)
                return
            written += len(piece)
            yield piece
    finally:
        # The upstream request ends now (the cap, a stop), not whenever GC gets to it.
        close = getattr(pieces, "aclose", None)
        if close is not None:
            await close()
    end = end or ReplyEnd()
    if not written and end.status == "complete":
        if end.finish_reason == "tool_calls":
            raise ChatModelError("The model answered with a tool call instead of text")
        raise ChatModelError("The model sent an empty reply")
    yield end

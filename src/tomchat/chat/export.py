"""Transcripts as files: JSON, JSON Lines, Markdown and plain text.

Pure formatting: a ``TranscriptSummary`` and pages of ``MessageRow`` in, text out. Nothing
here reads the database or the clock, so the same rows always give the same bytes; the
HTTP route and the CLI feed it pages from ``store.transcripts`` and stream what it returns.
Times are UTC (the server cannot know the reader's zone); JSON keeps the wire shape
(a message as clients see it) with microseconds, the readable formats show whole seconds.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args
from urllib.parse import quote, urlencode

import msgspec

from tomchat.domain.transcript import STREAMING, MessageRow
from tomchat.store.transcripts import Bound, TranscriptSummary
from tomchat.wire import outgoing as wire

Format = Literal["json", "jsonl", "markdown", "text"]
FORMATS: tuple[Format, ...] = get_args(Format)

_json = msgspec.json.Encoder()

# How the readable formats mark a reply that did not finish normally.
STATUS_MARKS = {
    "stopped": "stopped",
    "failed": "failed",
    "interrupted": "interrupted",
    "truncated": "cut short",
    "filtered": "filtered",
    STREAMING: "still replying",
}


@dataclass(frozen=True, slots=True)
class FileKind:
    media_type: str
    extension: str


FILE_KINDS: dict[Format, FileKind] = {
    "json": FileKind("application/json", "json"),
    "jsonl": FileKind("application/x-ndjson", "jsonl"),
    "markdown": FileKind("text/markdown; charset=utf-8", "md"),
    "text": FileKind("text/plain; charset=utf-8", "txt"),
}


def file_name(summary: TranscriptSummary, fmt: Format) -> str:
    # Room ids are [A-Za-z0-9_-] (limits.ROOM_ID_PATTERN): safe in a header as they are.
    return f"tomchat-{summary.room.id}.{FILE_KINDS[fmt].extension}"


def content_disposition(summary: TranscriptSummary, fmt: Format) -> str:
    return f'attachment; filename="{file_name(summary, fmt)}"'


class Formatter:
    """Writes one format: ``start()``, then ``page(rows)`` per page, then ``end()``."""

    def __init__(
        self,
        summary: TranscriptSummary,
        media_base: str | None = None,
        media_token: str | None = None,
    ) -> None:
        self.summary = summary
        # Audio links in the readable formats are absolute when the base is known, so a
        # file saved to disk still points at the server; JSON keeps the stored URLs.
        self.media_base = media_base.rstrip("/") if media_base else None
        # A private room's files answer only with its invite token: the readable formats'
        # links carry it, so whoever holds the invite (and so this file) can play them.
        self.media_token = media_token

    def start(self) -> str:
        return ""

    def page(self, rows: Sequence[MessageRow]) -> str:
        raise NotImplementedError

    def end(self) -> str:
        return ""

    def link(self, url: str) -> str:
        absolute = f"{self.media_base}{url}" if self.media_base and url.startswith("/") else url
        if self.media_token and url.startswith("/"):
            absolute += ("&" if "?" in absolute else "?") + urlencode({"token": self.media_token})
        return quote(absolute, safe=":/?&=#%@+,;~!$'*")


class JsonFormatter(Formatter):
    """``{"room": …, "version": H, "count": N, "messages": [Message, …]}``, a message a line."""

    def __init__(
        self,
        summary: TranscriptSummary,
        media_base: str | None = None,
        media_token: str | None = None,
    ) -> None:
        super().__init__(summary, media_base, media_token)
        self._first = True

    def start(self) -> str:
        s, room = self.summary, self.summary.room
        head = {
            "room": {
                "id": room.id,
                "name": room.name,
                "character": room.character,
                "createdAt": wire.iso(room.created_at) if room.created_at else None,
                "cast": [{"id": m.id, "name": m.name, "revision": m.revision} for m in room.cast],
            },
            "version": s.version,
            "count": s.count,
            "range": {"from": _bound_json(s.span.start), "to": _bound_json(s.span.end)},
        }
        # The messages array is left open: pages are written into it as they come.
        return _json.encode(head)[:-1].decode() + ',"messages":['

    def page(self, rows: Sequence[MessageRow]) -> str:
        if not rows:
            return ""
        body = ",\n".join(_json.encode(wire.message(r)).decode() for r in rows)
        lead = "\n" if self._first else ",\n"
        self._first = False
        return lead + body

    def end(self) -> str:
        return "]}\n" if self._first else "\n]}\n"


class JsonLinesFormatter(Formatter):
    """One Message per line and nothing else, so ``jq -c`` and line tools work as they are."""

    def page(self, rows: Sequence[MessageRow]) -> str:
        return "".join(_json.encode(wire.message(r)).decode() + "\n" for r in rows)


class MarkdownFormatter(Formatter):
    """A document: title, the room and its times, a heading per day, a quote per message.

    Each message's text goes in a block quote, ``>`` on every line: whatever Markdown a
    message holds renders inside its own quote and can never pose as the next speaker.
    Raw HTML in a message (``<script>``, ``<img onerror=…>``) is escaped, as lenient
    viewers would render it; code spans and fenced blocks stay as written (no viewer runs
    HTML there).
    """

    def __init__(
        self,
        summary: TranscriptSummary,
        media_base: str | None = None,
        media_token: str | None = None,
    ) -> None:
        super().__init__(summary, media_base, media_token)
        self._day = ""

    def start(self) -> str:
        s, room = self.summary, self.summary.room
        title = md_escape(room.name or room.id)
        about = f"Room `{room.id}`"
        names = [m.name for m in room.cast] or ([room.character] if room.character else [])
        if names:
            listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
            about += f" with {md_escape(listed)}"
        about += " · " + _count(s.count)
        if s.first_at is not None and s.last_at is not None:
            about += f" · {_stamp(s.first_at)} to {_stamp(s.last_at)} UTC"
        lines = [f"# {title}", "", about]
        excerpt = _range_words(s)
        if excerpt:
            lines += ["", f"Excerpt: {excerpt}."]
        return "\n".join(lines) + "\n"

    def page(self, rows: Sequence[MessageRow]) -> str:
        # The hot loop of a big export: one string per message, names bound locally.
        out: list[str] = []
        add, escape, marks, quote = out.append, md_escape, STATUS_MARKS, _quote
        html = html_escape
        for row in rows:
            stamp = row.created_at.isoformat(" ", "seconds")
            if stamp[:10] != self._day:
                self._day = stamp[:10]
                add(f"\n## {self._day}\n")
            head = f"\n**{escape(row.author)}** · {stamp[11:19]}"
            if row.source == "voice":
                head += " · voice"
            mark = marks.get(row.status)
            if mark:
                head += f" · *{mark}*"
            if row.deleted or row.edited:
                head += " · *deleted*" if row.deleted else " · *edited*"
            if row.audio_url:
                head += f" · [audio]({self.link(row.audio_url)})"
            add(f"{head}\n\n{quote(html(row.content))}\n" if row.content else head + "\n")
        return "".join(out)


class TextFormatter(Formatter):
    """Plain lines: ``[2026-11-24 20:07:49 UTC] ann: text``; further lines indented by 4."""

    def page(self, rows: Sequence[MessageRow]) -> str:
        out: list[str] = []
        for row in rows:
            who = row.author
            notes = ["voice"] if row.source == "voice" else []
            mark = STATUS_MARKS.get(row.status)
            if mark:
                notes.append(mark)
            if row.deleted or row.edited:
                notes.append("deleted" if row.deleted else "edited")
            if notes:
                who += f" ({', '.join(notes)})"
            first, *rest = row.content.replace("\r\n", "\n").split("\n")
            out.append(f"[{_stamp(row.created_at)} UTC] {who}: {first}".rstrip() + "\n")
            # Further lines are indented (blank ones stay blank), so only a new message
            # starts a line with "[".
            out.extend(f"    {line}\n" if line.strip() else "\n" for line in rest)
        return "".join(out)


_FORMATTERS: dict[Format, type[Formatter]] = {
    "json": JsonFormatter,
    "jsonl": JsonLinesFormatter,
    "markdown": MarkdownFormatter,
    "text": TextFormatter,
}


def formatter(
    fmt: Format,
    summary: TranscriptSummary,
    media_base: str | None = None,
    media_token: str | None = None,
) -> Formatter:
    return _FORMATTERS[fmt](summary, media_base, media_token)


async def render(
    fmt: Format,
    summary: TranscriptSummary,
    pages: AsyncIterable[Sequence[MessageRow]],
    media_base: str | None = None,
    media_token: str | None = None,
) -> AsyncIterator[bytes]:
    """The whole file, one piece per page (a few hundred kB at most, whatever the room)."""
    writer = formatter(fmt, summary, media_base, media_token)
    yield writer.start().encode()
    async for rows in pages:
        piece = writer.page(rows).encode()
        del rows  # a reader that stalls on this piece pins its bytes, not its rows too
        yield piece
    yield writer.end().encode()


def render_all(
    fmt: Format,
    summary: TranscriptSummary,
    pages: Iterable[Sequence[MessageRow]],
    media_base: str | None = None,
    media_token: str | None = None,
) -> str:
    """The same file as one string (for tests and small rooms)."""
    writer = formatter(fmt, summary, media_base, media_token)
    return writer.start() + "".join(writer.page(rows) for rows in pages) + writer.end()


# -- small pieces ----------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


@functools.lru_cache(maxsize=1024)  # a room has a handful of speakers: escape each once
def md_escape(text: str) -> str:
    """Names as literal text in Markdown (``**bob_the_builder**`` stays as typed)."""
    return _MD_SPECIAL.sub(r"\\\1", text.replace("\n", " "))


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)


def _html_text(text: str) -> str:
    # Every tag starts with "<": without it nothing is HTML (an entity is only a character).
    return text.replace("<", "&lt;")


def html_escape(text: str) -> str:
    """Message text with raw HTML made literal, outside code spans and fenced blocks."""
    if "<" not in text:
        return text
    out: list[str] = []
    fence: str | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        opened = _FENCE.match(line)
        if fence is not None:
            out.append(line)
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
            continue
        if opened:
            fence = opened.group(1)
            out.append(line)
            continue
        pieces, last = [], 0
        for span in _CODE_SPAN.finditer(line):
            pieces += [_html_text(line[last : span.start()]), span.group(0)]
            last = span.end()
        pieces.append(_html_text(line[last:]))
        out.append("".join(pieces))
    return "\n".join(out)


def _quote(text: str) -> str:
    if "\n" not in text:
        return "> " + text
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n".join(f"> {line}" if line else ">" for line in lines)


def _stamp(at: datetime) -> str:
    # isoformat is several times faster than strftime, and this runs once per message.
    return at.isoformat(sep=" ", timespec="seconds")[:19]


def _count(n: int) -> str:
    return "no messages" if n == 0 else "1 message" if n == 1 else f"{n:,} messages"


def _bound_json(bound: Bound | None) -> int | str | None:
    if bound is None:
        return None
    if bound.version is not None:
        return bound.version
    assert bound.at is not None
    return wire.iso(bound.at)


def _bound_words(bound: Bound) -> str:
    if bound.version is not None:
        return f"version {bound.version}"
    assert bound.at is not None
    return f"{_stamp(bound.at)} UTC"


def _range_words(summary: TranscriptSummary) -> str:
    start, end = summary.span.start, summary.span.end
    if start and end:
        return f"messages from {_bound_words(start)} to {_bound_words(end)}"
    if start:
        return f"messages from {_bound_words(start)} on"
    if end:
        return f"messages up to {_bound_words(end)}"
    return ""

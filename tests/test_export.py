"""The formatters and terminal pieces on their own: rows in, exact text out."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tomchat.chat.export import md_escape, render_all
from tomchat.cli.terminal import Progress, ReplayPrinter
from tomchat.domain.events import Event, RecordedEvent, ReplyChunk, ReplyCompleted, ReplyStarted
from tomchat.domain.transcript import MessageRow
from tomchat.store.rooms import RoomInfo
from tomchat.store.transcripts import Bound, Span, TranscriptSummary

AT = datetime(2026, 7, 1, 23, 59, 59, 999_999, tzinfo=UTC)


def row(id: str, author: str, content: str, status: str, *, ai: bool = True) -> MessageRow:
    return MessageRow(
        id=id,
        room_id="r",
        author=author,
        is_ai=ai,
        content=content,
        status=status,
        source="text",
        audio_url=None,
        created_at=AT,
        completed_at=None,
        first_version=1,
        last_version=1,
    )


def summary(count: int, span: Span | None = None) -> TranscriptSummary:
    room = RoomInfo("r", None, None, 9, AT, AT)
    first = AT if count else None
    return TranscriptSummary(room, 9, count, first, first, span or Span())


def test_every_unfinished_status_is_marked() -> None:
    rows = [
        row("a", "Tom", "cut off by a new message", "interrupted"),
        row("b", "Tom", "still going", "streaming"),
        row("c", "[x](evil)", "# not a heading\n---", "complete", ai=False),
    ]
    assert render_all("text", summary(3), [rows]) == (
        "[2026-07-01 23:59:59 UTC] Tom (interrupted): cut off by a new message\n"
        "[2026-07-01 23:59:59 UTC] Tom (still replying): still going\n"
        "[2026-07-01 23:59:59 UTC] [x](evil): # not a heading\n"
        "    ---\n"
    )
    # A room without a name is titled by its id; names and Markdown in text stay literal.
    assert render_all("markdown", summary(3, Span(end=Bound(version=7))), [rows]) == (
        "# r\n\nRoom `r` · 3 messages · 2026-07-01 23:59:59 to 2026-07-01 23:59:59 UTC\n"
        "\nExcerpt: messages up to version 7.\n"
        "\n## 2026-07-01\n"
        "\n**Tom** · 23:59:59 · *interrupted*\n\n> cut off by a new message\n"
        "\n**Tom** · 23:59:59 · *still replying*\n\n> still going\n"
        "\n**\\[x\\]\\(evil\\)** · 23:59:59\n\n> # not a heading\n> ---\n"
    )
    assert render_all("markdown", summary(0), []) == "# r\n\nRoom `r` · no messages\n"
    assert render_all("json", summary(0), []).endswith(',"messages":[]}\n')
    assert render_all("jsonl", summary(0), []) == ""


def test_md_escape() -> None:
    assert md_escape("bob_the_builder") == "bob\\_the\\_builder"
    assert md_escape("a*b*") == "a\\*b\\*"
    assert md_escape("two\nlines") == "two lines"


def test_progress_line() -> None:
    out = io.StringIO()
    clock = iter([0.0, 0.05, 0.2])
    bar = Progress(200, out, clock=lambda: next(clock))
    assert bar.line() == "[------------------------------]   0%  0/200 messages"
    bar.advance(50)  # drawn
    bar.advance(50)  # too soon after: not drawn
    bar.advance(100)  # drawn
    assert out.getvalue() == (
        "\r[########----------------------]  25%  50/200 messages"
        "\r[##############################] 100%  200/200 messages"
    )
    assert Progress(0, out).line().endswith("100%  0/0 messages")


def recorded(version: int, event: Event) -> RecordedEvent:
    return RecordedEvent(
        position=version,
        room_id="r",
        version=version,
        event_id=uuid.uuid4(),
        recorded_at=AT + timedelta(seconds=version),
        event=event,
    )


def test_printer_in_colour_resumes_an_interrupted_line() -> None:
    out = io.StringIO()
    printer = ReplayPrinter(out, color=True)
    for v, event in enumerate(
        [
            ReplyStarted(message_id="r", character="Tom"),
            ReplyChunk(message_id="r", index=0, text="Line one\n"),
            ReplyChunk(message_id="r", index=1, text="line two"),
            ReplyCompleted(message_id="r", content="Line one\nline two", status="interrupted"),
        ],
        start=1,
    ):
        printer.show(recorded(v, event))
    printer.finish()
    dim, bold_cyan, yellow, reset = "\x1b[2m", "\x1b[1;36m", "\x1b[33m", "\x1b[0m"
    assert out.getvalue() == (
        f"{dim}[00:00:00]{reset} {bold_cyan}Tom{reset}: Line one\n"
        f"    line two {yellow}[interrupted]{reset}\n"
    )


def test_markdown_export_escapes_html_but_not_code() -> None:
    text = (
        "<script>alert(1)</script> and <img src=x onerror=alert(2)>\n"
        "inline `<b>code</b>` stays\n"
        "```html\n<p>in a fence</p>\n```\n"
        "after the fence <i>"
    )
    rows = [row("x", "mallory", text, "complete", ai=False)]
    out = render_all("markdown", summary(1), [rows])
    assert out.endswith(
        "\n**mallory** · 23:59:59\n\n"
        "> &lt;script>alert(1)&lt;/script> and &lt;img src=x onerror=alert(2)>\n"
        "> inline `<b>code</b>` stays\n"
        "> ```html\n> <p>in a fence</p>\n> ```\n"
        "> after the fence &lt;i>\n"
    )
    assert "<script" not in out and "<img" not in out
    # Plain text is not rendered by anyone: it keeps the message as written.
    assert "<script>alert(1)</script>" in render_all("text", summary(1), [rows])


def test_audio_links_carry_the_invite_token() -> None:
    voiced = MessageRow(
        id="v",
        room_id="r",
        author="Tom",
        is_ai=True,
        content="hi",
        status="complete",
        source="text",
        audio_url="/media/v-0123.mp3",
        created_at=AT,
        completed_at=None,
        first_version=1,
        last_version=1,
    )
    out = render_all("markdown", summary(1), [[voiced]], "http://h:1/", "t+k/=")
    assert "[audio](http://h:1/media/v-0123.mp3?token=t%2Bk%2F%3D)" in out
    assert "token" not in render_all("markdown", summary(1), [[voiced]], "http://h:1/")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("out", "env", "coloured"),
    [
        (io.StringIO(), {}, False),  # a pipe or a file: never colour codes
        (_Terminal(), {}, True),
        (_Terminal(), {"NO_COLOR": "1"}, False),
        (_Terminal(), {"TERM": "dumb"}, False),
    ],
)
def test_replay_colours_only_where_they_show(
    out: io.StringIO, env: dict[str, str], coloured: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    printer = ReplayPrinter(out, color=None)
    printer.show(recorded(1, ReplyStarted(message_id="r", character="Tom")))
    printer.finish()
    written = out.getvalue()
    assert ("\x1b[1;36mTom\x1b[0m" in written) is coloured
    assert ("\x1b" in written) is coloured
    assert written.endswith(": \n")

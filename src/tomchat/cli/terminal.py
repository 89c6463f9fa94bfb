"""What the CLI draws in a terminal: a progress bar for exports and the replay player."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TextIO, assert_never

from tomchat.chat.export import STATUS_MARKS
from tomchat.domain.events import (
    CharacterArchived,
    CharacterCreated,
    CharacterUpdated,
    MemberKicked,
    MemorySummarized,
    MessageEdited,
    MessageImported,
    MessagePosted,
    MessageRedacted,
    RecordedEvent,
    ReplyAudio,
    ReplyChosen,
    ReplyChunk,
    ReplyCompleted,
    ReplyStarted,
    RoomCastChanged,
    RoomCreated,
    RoomForked,
    RoomLocked,
    RoomRenamed,
)

if TYPE_CHECKING:  # rich is imported when a replay starts: an export does not need it
    from rich.style import Style

INDENT = "    "


class Progress:
    """``[#######-------]  52%  52,000/100,000 messages`` on one line of ``out``, redrawn
    at most ten times a second: printing is slower than exporting a page.

    Ours, not rich's (measured: ``python -m bench.kept_libraries terminal``): rich.progress
    adds ~90 ms of imports to every export, and on an output that is not a terminal (a log,
    ``--progress`` in CI) it shows nothing until the end, where this line is redrawn."""

    WIDTH = 30

    def __init__(
        self,
        total: int,
        out: TextIO,
        label: str = "messages",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.out, self.label, self.clock = total, out, label, clock
        self.done = 0
        self._drawn_at: float | None = None

    def advance(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if self._drawn_at is None or now - self._drawn_at >= 0.1:
            self._draw()
            self._drawn_at = now

    def close(self) -> None:
        self._draw()
        self.out.write("\n")
        self.out.flush()

    def line(self) -> str:
        share = self.done / self.total if self.total else 1.0
        filled = round(share * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        return f"[{bar}] {share:4.0%}  {self.done:,}/{self.total:,} {self.label}"

    def _draw(self) -> None:
        self.out.write("\r" + self.line())
        self.out.flush()


class _Style:
    """Colours by rich: whether to colour at all is rich's call for the output (a terminal,
    and neither ``NO_COLOR`` nor ``TERM=dumb``; ``FORCE_COLOR`` forces it) unless ``color``
    says; the codes are rich's, in the 8 standard colours every terminal has."""

    def __init__(self, out: TextIO, color: bool | None) -> None:
        from rich.color import ColorSystem
        from rich.console import Console
        from rich.style import Style

        self._parse = Style.parse

        if color is None:
            console = Console(file=out)
            color = console.color_system is not None and not console.no_color
        self.system = ColorSystem.STANDARD if color else None
        self._styles: dict[str, Style] = {}

    def _wrap(self, style: str, text: str) -> str:
        if self.system is None or not text:
            return text
        parsed = self._styles.get(style) or self._styles.setdefault(style, self._parse(style))
        return parsed.render(text, color_system=self.system)

    def dim(self, text: str) -> str:
        return self._wrap("dim", text)

    def user(self, text: str) -> str:
        return self._wrap("bold", text)

    def ai(self, text: str) -> str:
        return self._wrap("bold cyan", text)

    def mark(self, text: str) -> str:
        return self._wrap("yellow", text)


class ReplayPrinter:
    """Prints a room's events as a running conversation: a message appears whole, a reply
    types itself out chunk by chunk on its own line.

    A message posted while a reply is typing ends the reply's line for a moment; the reply
    goes on, under its author's name, on a line of its own.
    """

    def __init__(self, out: TextIO, *, color: bool | None = False) -> None:
        """``color``: True or False, or None for "if ``out`` takes colours" (rich decides)."""
        self.out = out
        self.style = _Style(out, color)
        self._open: str | None = None  # the reply whose line is being typed
        self._typed: dict[str, str] = {}  # text typed so far, per reply still going
        self._authors: dict[str, str] = {}
        self._tail = "\n"  # the last character written: where the cursor stands

    def show(self, recorded: RecordedEvent) -> None:
        event, at = recorded.event, recorded.recorded_at
        match event:
            case RoomCreated(name=name, character=character):
                names = ", ".join(m.name for m in event.cast) or character
                self._line(at, self.style.dim(f"room {name!r} opened with {names}"))
            case RoomCastChanged():
                names = ", ".join(m.name for m in event.cast)
                self._line(at, self.style.dim(f"the cast is now {names}"))
            case MessagePosted():
                who = event.username + (" (voice)" if event.source == "voice" else "")
                self._line(at, f"{self.style.user(who)}: {_indented(event.content)}")
            case ReplyStarted():
                self._end_line()
                self._authors[event.message_id] = event.character
                self._typed[event.message_id] = ""
                self._write(f"{self._stamp(at)} {self.style.ai(event.character)}: ")
                self._open = event.message_id
            case ReplyChunk():
                self._type(event.message_id, event.text)
            case ReplyCompleted():
                typed = self._typed.pop(event.message_id, "")
                # A reply whose text was never streamed (the greeting) or that ended with
                # more than its chunks said shows the rest now.
                if event.content.startswith(typed) and len(event.content) > len(typed):
                    self._type(event.message_id, event.content[len(typed) :])
                mark = STATUS_MARKS.get(event.status)
                if mark:
                    self._resume(event.message_id)
                    gap = "" if self._tail in " \n" else " "
                    self._write(gap + self.style.mark(f"[{mark}]"))
                if self._open == event.message_id:
                    self._end_line()
                self._authors.pop(event.message_id, None)
            case RoomLocked():
                said = "locked the room" if event.locked else "unlocked the room"
                self._line(at, self.style.dim(f"{event.by} {said}"))
            case RoomRenamed():
                self._line(at, self.style.dim(f"{event.by} renamed the room {event.name!r}"))
            case MemberKicked():
                self._line(at, self.style.dim(f"{event.by} removed {event.username}"))
            case ReplyAudio() | MemorySummarized():
                pass  # nothing to show in a terminal
            case CharacterCreated() | CharacterUpdated() | CharacterArchived():
                pass  # a character's own stream, never a room's
            case MessageEdited():
                self._line(at, self.style.dim(f"(edited) {_indented(event.content)}"))
            case MessageRedacted():
                self._line(at, self.style.dim(f"(a message was deleted by {event.by})"))
            case ReplyChosen():
                self._line(at, self.style.dim("(another alternative was chosen)"))
            case RoomForked():
                self._line(
                    at, self.style.dim(f"room {event.name!r} forked from {event.from_room!r}")
                )
            case MessageImported():
                self._line(at, f"{self.style.user(event.username)}: {_indented(event.content)}")
            case _:
                assert_never(event)

    def finish(self) -> None:
        self._end_line()
        self.out.flush()

    # -- drawing ---------------------------------------------------------------------------

    def _type(self, message_id: str, text: str) -> None:
        self._resume(message_id)
        self._typed[message_id] = self._typed.get(message_id, "") + text
        # Chunks split lines anywhere: indent whatever starts a new line, in any chunk.
        for i, part in enumerate(text.replace("\r\n", "\n").split("\n")):
            if i:
                self._write("\n")
            if part:
                self._write((INDENT if self._tail == "\n" else "") + part)

    def _resume(self, message_id: str) -> None:
        """Put the cursor at the end of this reply's line, starting a new one if need be."""
        if self._open == message_id:
            return
        self._end_line()
        author = self._authors.get(message_id, "?")
        self._write(f"{INDENT}{self.style.ai(author)} … ")
        self._open = message_id

    def _line(self, at: datetime, text: str) -> None:
        self._end_line()
        self._write(f"{self._stamp(at)} {text}\n")

    def _end_line(self) -> None:
        if self._open is not None:
            self._write("\n")
            self._open = None

    def _stamp(self, at: datetime) -> str:
        return self.style.dim(f"[{at.isoformat(timespec='seconds')[11:19]}]")

    def _write(self, text: str) -> None:
        if text:
            self._tail = text[-1]
        self.out.write(text)
        self.out.flush()


def _indented(text: str) -> str:
    """Further lines of a message under its first, blank lines left blank."""
    first, *rest = text.replace("\r\n", "\n").split("\n")
    return "\n".join([first, *(INDENT + line if line.strip() else "" for line in rest)])

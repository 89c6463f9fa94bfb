"""The SSE parser against the framing rules of the standard, with bytes cut anywhere."""

from __future__ import annotations

import pytest

from tomchat.ai.sse import ServerSentEvent, SSEParser

STREAM = (
    "\ufeff: a comment first\r\n"
    "data: one\r\n"
    "\r\n"
    "event: update\n"
    "id: 7\n"
    "data: two\n"
    "data:  three with a leading space\n"
    "\n"
    ": keep-alive\r"
    "data: caf\u00e9 \u2603 \U0001f600\r"
    "\r"
    "retry: 1500\n"
    "data\n"
    "\n"
    "data: [DONE]\n"
    "\n"
).encode()

EXPECTED = [
    ServerSentEvent("one"),
    ServerSentEvent("two\n three with a leading space", event="update", id="7"),
    ServerSentEvent("caf\u00e9 \u2603 \U0001f600", id="7"),
    ServerSentEvent("", id="7", retry=1500),
    ServerSentEvent("[DONE]", id="7", retry=1500),
]


def parse(pieces: list[bytes]) -> list[ServerSentEvent]:
    parser = SSEParser()
    events = [e for piece in pieces for e in parser.feed(piece)]
    return events + parser.close()


def test_whole_stream() -> None:
    assert parse([STREAM]) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 11])
def test_any_cut_gives_the_same_events(size: int) -> None:
    # Cuts land inside "\r\n" pairs, field names and multi-byte characters.
    pieces = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert parse(pieces) == EXPECTED


def test_every_single_cut_point() -> None:
    for cut in range(len(STREAM)):
        assert parse([STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut


def test_last_event_without_blank_line_is_handed_out_at_close() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"a": 1}\n\ndata: [DONE]\n') == [ServerSentEvent('{"a": 1}')]
    assert parser.close() == [ServerSentEvent("[DONE]")]


def test_comment_only_stream_has_no_events() -> None:
    assert parse([b": ping\n\n: ping\n\n"]) == []

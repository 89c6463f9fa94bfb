"""A Server-Sent Events reader for tests: each event with the moment it arrived."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class SseEvent:
    event: str = "message"
    id: str | None = None
    data: str = ""
    comments: list[str] = field(default_factory=list)  # comment lines seen before it
    at: float = 0.0  # time.monotonic() when its blank line arrived

    def json(self) -> Any:
        return json.loads(self.data)


async def read_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """Events as they arrive, parsed per the WHATWG rules (the subset tomchat sends).

    Comment-only blocks (keep-alives) come out as events with ``event == ""``.
    """
    current = SseEvent()
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            current.data = "\n".join(data)
            current.at = time.monotonic()
            if data or current.id is not None:
                yield current
            elif current.comments:
                current.event = ""
                yield current
            current, data = SseEvent(), []
            continue
        if line.startswith(":"):
            current.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "id":
            current.id = value
        elif name == "event":
            current.event = value

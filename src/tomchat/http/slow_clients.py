"""Time limits on reading a request: its head, and each piece of its body.

uvicorn times out idle keep-alive connections, but not a request that has begun: a client
that sends half a request head and then nothing (slowloris) holds its connection forever,
and so does one that stops in the middle of a body. ASGI apps never see either (the app is
called once the head is complete, and a stalled body is just a receive that never returns),
so the guard sits in uvicorn's HTTP protocol, where the bytes arrive:

- a request head must be complete within ``head_seconds`` of its first byte (or of the
  connection being made);
- while a body is being read, each piece must come within ``body_seconds`` of the last.

Past either the client gets ``408 Request Timeout`` (if nothing was answered yet) and the
connection is closed; the app sees ``http.disconnect``. This works whatever proxy is (or is
not) in front.

It leans on names of uvicorn's httptools protocol that uvicorn does not promise to keep;
``UPSTREAM`` lists them, and tests/test_slow_clients.py checks them against the installed
uvicorn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tomchat.domain import limits

#: Each upstream method overridden here, with its parameters (``self`` left out).
UPSTREAM: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("connection_made", ("transport",)),
    ("connection_lost", ("exc",)),
    ("on_message_begin", ()),
    ("on_headers_complete", ()),
    ("on_body", ("body",)),
    ("on_message_complete", ()),
    ("handle_websocket_upgrade", ()),
)

_MESSAGE = b"the request came too slowly\n"
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: " + str(len(_MESSAGE)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _MESSAGE
)


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with the two read deadlines (class attributes, set by
    :func:`configure`)."""

    head_seconds: float = 10.0
    body_seconds: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    # -- the deadlines ------------------------------------------------------------------

    def _arm_head(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_seconds, self._too_slow)

    def _arm_body(self) -> None:
        self._cancel_body()
        self._body_timer = self.loop.call_later(self.body_seconds, self._too_slow)

    def _cancel_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _too_slow(self) -> None:
        self._head_timer = self._body_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        # A cycle left from the last request on this connection has answered already; a
        # request whose head never completed has no answer started (its cycle is new).
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(_TIMED_OUT)
        self.transport.close()

    # -- uvicorn's callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head()
        self._cancel_body()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head()  # the next request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._cancel_head()
        super().on_headers_complete()
        # Until on_message_complete (at once for a request without a body).
        self._arm_body()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm_body()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._cancel_body()

    def handle_websocket_upgrade(self) -> None:
        # The connection becomes a websocket (another protocol object): no deadlines here.
        self._cancel_head()
        self._cancel_body()
        super().handle_websocket_upgrade()


def configure(head_seconds: float, body_seconds: float) -> None:
    """Set the deadlines of every connection this process serves from now on (each
    ``tomchat serve`` worker calls it with its settings; uvicorn is given the class by
    name, which works across worker processes)."""
    GuardedHttpTools.head_seconds = head_seconds
    GuardedHttpTools.body_seconds = body_seconds


def uvicorn_options() -> dict[str, Any]:
    """What ``uvicorn.Config`` takes to serve tomchat with these limits: the guarded
    protocol (by name: worker processes import it), websocket frames no larger than the
    largest Engine.IO packet (refused before they are assembled), and h11's cap on an
    incomplete head, should uvicorn ever use h11."""
    return {
        "http": f"{__name__}:GuardedHttpTools",
        "ws_max_size": limits.MAX_PACKET_BYTES + 64,  # the packet, and the frame's few bytes
        "h11_max_incomplete_event_size": 64 * 1024,
    }

"""Start-up, readiness and draining of one tomchat process.

uvicorn on SIGTERM/SIGINT first waits for open HTTP requests and only then runs the app's
shutdown — and a Socket.IO long-poll is an open request for up to its ping interval, while
replies go on streaming (and end ``complete``). So the app drains as soon as the signal
arrives: readiness turns 503, replies in flight end ``interrupted`` with their committed text
(their last group commit finished), then every socket is closed, which ends the long-polls
and lets uvicorn stop at once."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[object]]


class Lifecycle:
    def __init__(self) -> None:
        self.started = False
        self._steps: list[Step] = []
        self._drain: asyncio.Task[None] | None = None
        self._replaced: dict[int, Any] = {}  # the signal handlers ours stand in front of

    @property
    def draining(self) -> bool:
        return self._drain is not None

    def on_drain(self, step: Step) -> None:
        """Run ``step`` when draining begins (steps run in the order given)."""
        self._steps.append(step)

    def drain(self) -> asyncio.Task[None]:
        """Begin draining (once); the task ends when every step has run."""
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_task(self._run(), name="drain")
        return self._drain

    async def _run(self) -> None:
        for step in self._steps:
            try:
                await step()
            except Exception:
                log.exception("draining step failed")

    def drain_on_signals(self) -> None:
        """Put draining in front of the server's SIGTERM/SIGINT handlers (uvicorn's, which
        stop it): the signal drains, then stops the server, so the rooms see their replies
        end before their sockets close. A second signal goes to the server at once."""
        if threading.current_thread() is not threading.main_thread():
            return  # an app run in a thread by tests: no signals reach it
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if not callable(previous) or previous is signal.default_int_handler:
                continue  # no server's handler (an app run in-process): leave it alone
            self._replaced[sig] = previous

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                def stop(*_: object) -> None:
                    previous(signum, frame)

                if self.draining:
                    stop()
                    return
                loop.call_soon_threadsafe(lambda: self.drain().add_done_callback(stop))

            signal.signal(sig, handler)

    def restore_signals(self) -> None:
        """Hand the signals back to the handlers ours stood in front of."""
        for sig, previous in self._replaced.items():
            signal.signal(sig, previous)
        self._replaced.clear()

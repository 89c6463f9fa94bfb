"""Waiting for something that happens elsewhere (another task, process or server)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str | None = None,
) -> None:
    """Return once ``predicate()`` (plain or async) is true; fail after ``timeout`` seconds,
    saying what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            name = what or getattr(predicate, "__name__", "the condition")
            raise AssertionError(f"{name} still false after {timeout:g} s")
        await asyncio.sleep(interval)

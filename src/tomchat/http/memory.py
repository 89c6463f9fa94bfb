"""Memory handed back to the system after a big response.

A stalled or finished download frees its pages, but glibc's allocator keeps freed heap
memory for reuse, so a process that served 32 large exports at once stays that big.
``malloc_trim(0)`` returns what is free at the top and in the middle of the heap; it costs a
walk of the heap (a few milliseconds), so it runs once, half a second after the last of the
streams ending together has ended. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

_DELAY = 0.5  # after the last of a burst of streams ends: one walk of the heap for all


def _libc_trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


_trim = _libc_trim()
_scheduled: asyncio.TimerHandle | None = None


def release_memory() -> None:
    """Hand freed heap memory back to the system now."""
    if _trim is not None:
        _trim(0)


def release_memory_soon() -> None:
    """``release_memory`` once no stream has ended for half a second."""
    global _scheduled
    if _trim is None:
        return
    if _scheduled is not None:
        _scheduled.cancel()
    _scheduled = asyncio.get_running_loop().call_later(_DELAY, release_memory)


async def returning_memory(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` as they are; when the stream ends, however it ends, memory goes back."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        release_memory_soon()

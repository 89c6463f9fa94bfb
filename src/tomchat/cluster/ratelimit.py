"""Rate limits for the live edge, per connection and per username, kept by ``limits``.

A ``Rate(burst, per_second)`` is a moving window: at most ``burst`` requests in any
``burst / per_second`` seconds (rounded up to whole seconds, the library's finest unit). A
refusal says exactly when the oldest request in the window leaves it (``retryAfter``).

Where the windows live: a connection lives on one process, so its windows stay in that
process's memory; a username can be used from several processes at once, so with
``TOMCHAT_REDIS_URL`` its windows are in Redis and every process counts against the same
ones. Entries expire with their window, so idle names are forgotten (in memory by the
library's expiry task, in Redis by key expiry).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import MemoryStorage as SyncMemoryStorage
from limits.strategies import MovingWindowRateLimiter as SyncMovingWindowRateLimiter

# RateLimited lives with the other errors, so the error table (wire.errors) needs no edge.
from tomchat.domain.errors import RateLimited
from tomchat.domain.limits import Rate

__all__ = ["Limiter", "PacketLimiter", "RateLimitStores", "RateLimited", "window"]


class RateLimitStores:
    """Where the windows are kept: ``local`` for connections, ``shared`` for usernames."""

    def __init__(self, redis_url: str | None = None, prefix: str = "tomchat") -> None:
        self.local: Storage = MemoryStorage()
        self.shared: Storage = (
            RedisStorage(
                f"async+{redis_url}", implementation="redispy", key_prefix=f"{prefix}:limits"
            )
            if redis_url
            else self.local
        )


def window(what: str, rate: Rate) -> RateLimitItem:
    if rate.burst < 1 or rate.per_second <= 0:
        raise ValueError(f"a rate needs burst >= 1 and per_second > 0, got {rate}")
    seconds = max(1, math.ceil(rate.burst / rate.per_second))
    return RateLimitItemPerSecond(int(rate.burst), seconds, namespace=what.replace(" ", "-"))


class Limiter:
    """One kind of request (messages, voice, joins) limited under several keys at once:
    the first key is the connection, any others are names."""

    def __init__(self, what: str, rate: Rate, stores: RateLimitStores | None = None) -> None:
        self.what = what
        self.item = window(what, rate)
        stores = stores or RateLimitStores()
        self._local = MovingWindowRateLimiter(stores.local)
        self._shared = MovingWindowRateLimiter(stores.shared)

    def _windows(self, keys: Sequence[str]) -> list[tuple[MovingWindowRateLimiter, str, str]]:
        connection, *names = keys
        return [(self._local, "connection", connection)] + [
            (self._shared, "name", name) for name in names
        ]

    async def check(self, keys: Sequence[str]) -> None:
        """Take a place under every key, or none at all and raise ``RateLimited``.

        All or nothing: a request refused by the username's window must not also fill the
        connection's, or a client would be punished twice for one refusal.
        """
        windows = self._windows(keys)
        wait = 0.0
        for limiter, kind, key in windows:
            if not await limiter.test(self.item, kind, key):
                wait = max(wait, await self._wait(limiter, kind, key))
        if wait > 0:
            raise RateLimited(self.what, wait)
        for limiter, kind, key in windows:
            # Another process may take the last place between the test and this hit; then
            # this request is refused (the places taken before it stay taken: rare, small).
            if not await limiter.hit(self.item, kind, key):
                raise RateLimited(self.what, await self._wait(limiter, kind, key))

    async def _wait(self, limiter: MovingWindowRateLimiter, kind: str, key: str) -> float:
        stats = await limiter.get_window_stats(self.item, kind, key)
        # At least a tenth: a refusal never tells a client to retry at once.
        return max(0.1, stats.reset_time - time.time())

    async def forget(self, connection: str) -> None:
        await self._local.clear(self.item, "connection", connection)


class PacketLimiter:
    """One connection's limit, checked synchronously: the packet gate runs on raw frames
    inside engine.io's receive path (``engine_hooks``), which cannot await. A connection
    lives on one process, so its window is in this process's memory."""

    def __init__(self, what: str, rate: Rate) -> None:
        self.what = what
        self.item = window(what, rate)
        self._limiter = SyncMovingWindowRateLimiter(SyncMemoryStorage())

    def check(self, connection: str) -> None:
        if not self._limiter.hit(self.item, "packets", connection):
            stats = self._limiter.get_window_stats(self.item, "packets", connection)
            raise RateLimited(self.what, max(0.1, stats.reset_time - time.time()))

    def forget(self, connection: str) -> None:
        self._limiter.clear(self.item, "packets", connection)

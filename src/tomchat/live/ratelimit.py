"""Token buckets for the live edge: per connection and per username.

A bucket holds up to ``burst`` tokens and refills at ``per_second``; a request takes one.
Buckets are kept only while they are not full: a full bucket behaves exactly like a missing
one, so idle names are forgotten and a stream of throwaway usernames cannot grow memory
without bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

# RateLimited lives with the other errors, so the error table (wire.errors) needs no edge.
from tomchat.domain.errors import RateLimited
from tomchat.domain.limits import Rate

__all__ = ["Limiter", "RateLimited", "TokenBuckets"]

Clock = Callable[[], float]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """Buckets of one rate, by key."""

    def __init__(self, rate: Rate, clock: Clock = time.monotonic) -> None:
        if rate.burst < 1 or rate.per_second <= 0:
            raise ValueError(f"a rate needs burst >= 1 and per_second > 0, got {rate}")
        self.rate = rate
        self.clock = clock
        self._buckets: dict[Hashable, _Bucket] = {}
        self._prune_at = 1024

    def _level(self, key: Hashable, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return self.rate.burst
        elapsed = max(0.0, now - bucket.updated)
        return min(self.rate.burst, bucket.tokens + elapsed * self.rate.per_second)

    def wait(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` may make one request (0 if it may now)."""
        level = self._level(key, now)
        return 0.0 if level >= 1 else (1 - level) / self.rate.per_second

    def take(self, key: Hashable, now: float) -> None:
        self._buckets[key] = _Bucket(self._level(key, now) - 1, now)
        if len(self._buckets) >= self._prune_at:
            self._prune(now)

    def forget(self, key: Hashable) -> None:
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        self._buckets = {
            k: b for k, b in self._buckets.items() if self._level(k, now) < self.rate.burst
        }
        # Pruning again only after the table has doubled keeps it amortised O(1) per take.
        self._prune_at = max(1024, 2 * len(self._buckets))


class Limiter:
    """One kind of request (messages, voice, joins) limited under several keys at once."""

    def __init__(self, what: str, rate: Rate, clock: Clock = time.monotonic) -> None:
        self.what = what
        self.buckets = TokenBuckets(rate, clock)

    def check(self, keys: Sequence[Hashable]) -> None:
        """Take a token under every key, or none at all and raise ``RateLimited``.

        All or nothing: a request refused by the username's bucket must not also drain the
        connection's, or a client would be punished twice for one refusal.
        """
        now = self.buckets.clock()
        wait = max(self.buckets.wait(k, now) for k in keys)
        if wait > 0:
            raise RateLimited(self.what, wait)
        for key in keys:
            self.buckets.take(key, now)

    def forget(self, key: Hashable) -> None:
        self.buckets.forget(key)

"""The root of every error tomchat raises, and the errors every layer may raise.

Each exception class of the project derives from :class:`TomchatError`, so a caller can tell
tomchat's own failures from a library's. The edges turn them into answers through one table
(``tomchat.wire.errors``): an ack code on Socket.IO, an RFC 9457 problem on REST.
"""

from __future__ import annotations

import math


class TomchatError(Exception):
    """Something tomchat itself refused or could not do."""


class ConfigError(TomchatError):
    """A setting is unusable; the message says which and why."""


class RateLimited(TomchatError):
    """Too many requests of one kind; ``retry_after`` says how long to wait, in seconds."""

    def __init__(self, what: str, retry_after: float) -> None:
        # Rounded up to a tenth, so a client that waits exactly this long always succeeds.
        self.retry_after = math.ceil(retry_after * 10) / 10
        super().__init__(f"too many {what}; try again in {self.retry_after:.1f} s")
        self.what = what

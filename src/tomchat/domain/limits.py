"""Input limits shared by every edge (Socket.IO, REST)."""

from __future__ import annotations

from dataclasses import dataclass

MAX_CONTENT_CHARS = 4000
MAX_USERNAME_CHARS = 32
MAX_ROOM_ID_CHARS = 64
MAX_ROOM_NAME_CHARS = 100
ROOM_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# Python's ``$`` also matches before a final newline, so "lobby\n" would pass the pattern
# above; validators in Python use this one (ECMA regexes, as in OpenAPI, lack ``\Z``).
ROOM_ID_STRICT = r"^[A-Za-z0-9_-]{1,64}\Z"
MAX_CLIENT_ID_CHARS = 128
MAX_REASON_CHARS = 500  # why a message was deleted (kept in the log)
CATCH_UP_MAX_EVENTS = 10_000
# The most a catch-up ack (``joinRoom``/``resync``) takes on the wire, as python-socketio
# encodes it: past it a client gets the snapshot form with ``reset``, itself trimmed to fit
# (older messages are then paged over REST).
CATCH_UP_MAX_BYTES = 1024 * 1024
SNAPSHOT_PAGE = 50
MAX_VOICE_BYTES = 5 * 1024 * 1024
MAX_VOICE_SECONDS = 120.0
# One Socket.IO packet (python-socketio ``max_http_buffer_size``): the largest voice message
# in base64 with its JSON envelope fits; anything bigger closes the connection.
MAX_PACKET_BYTES = 8 * 1024 * 1024
# Packets larger than this (only voice messages are, legitimately) also take a token of
# ``LiveLimits.large_packets``, so a flood of big junk is dropped before it is decoded.
LARGE_PACKET_BYTES = 64 * 1024
MAX_TOKEN_CHARS = 256
# ``GET /api/rooms``: rooms per page (the default, and the most a client may ask for).
ROOMS_PAGE = 50
MAX_ROOMS_PAGE = 200
# Cursors are room versions; anything past this is nonsense, and keeping it well inside 64
# bits means no database ever sees an integer it cannot hold.
MAX_VERSION = 2**53


@dataclass(frozen=True, slots=True)
class Rate:
    """``burst`` requests at once, ``per_second`` on average: a moving window of ``burst``
    places, each freed ``burst / per_second`` seconds after it was taken (live/ratelimit.py)."""

    burst: float
    per_second: float


@dataclass(frozen=True, slots=True)
class LiveLimits:
    """What one connection, one username and one room may ask of the server.

    Each of ``messages``, ``voice`` and ``joins`` is enforced twice, per connection and per
    username, so neither opening more sockets nor switching names buys more. ``events``
    counts every packet a connection sends, valid or not, and ``large_packets`` the big
    ones, both on the raw frame: a flood of junk is refused before any JSON is decoded.
    """

    messages: Rate = Rate(burst=8, per_second=1.0)
    voice: Rate = Rate(burst=3, per_second=0.2)
    joins: Rate = Rate(burst=12, per_second=1.0)
    events: Rate = Rate(burst=120, per_second=30.0)
    # ``typing`` notices passed on per connection: clients show a name for a few seconds
    # after each, so one every two seconds says all there is to say.
    typing: Rate = Rate(burst=1, per_second=0.5)
    # Packets over LARGE_PACKET_BYTES per connection (above the voice rate: never bites it).
    large_packets: Rate = Rate(burst=4, per_second=0.5)
    # New rooms, by ``POST /api/rooms`` or a ``joinRoom`` that creates one: per connection
    # and per address (the peer's IP), shared by both edges so neither doubles the budget.
    rooms: Rate = Rate(burst=20, per_second=1 / 6)
    # User messages waiting for the character's next reply, per room.
    waiting_messages: int = 25
    # Bytes queued for one socket beyond what its transport has taken; past it the
    # client is disconnected and catches up with ``since`` when it comes back.
    send_buffer_bytes: int = 2 * 1024 * 1024
    # The largest catch-up ack (``joinRoom``/``resync``) on the wire.
    catch_up_bytes: int = CATCH_UP_MAX_BYTES

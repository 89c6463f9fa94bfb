"""Who may change a room's cast.

The host model (member keys, host tokens) belongs to the people part of the server; until it
plugs in here, every member of a room may change its cast (:class:`MembersRecast`).
"""

from __future__ import annotations

from typing import Protocol


class RoomRoles(Protocol):
    def is_host(self, room_id: str, sid: str) -> bool:
        """Whether the socket ``sid`` acts as the room's host."""
        ...


class MembersRecast:
    """Every socket that joined the room counts as its host (the edge checks membership)."""

    def is_host(self, room_id: str, sid: str) -> bool:
        return True

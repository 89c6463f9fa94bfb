"""Helpers for the hardening suite: servers with chosen limits, raw clients, log counts."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import socketio
from sqlalchemy import func, select

from tests.conftest import RunningServer, ServerFactory
from tomchat.domain.limits import LiveLimits, Rate
from tomchat.store.schema import events

# Limits no test reaches by accident: for suites about something else than rate limiting.
GENEROUS = LiveLimits(
    messages=Rate(10_000, 10_000),
    voice=Rate(10_000, 10_000),
    joins=Rate(10_000, 10_000),
    events=Rate(100_000, 100_000),
    rooms=Rate(10_000, 10_000),
    large_packets=Rate(10_000, 10_000),
    waiting_messages=100_000,
)

StartServer = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
def start(server_factory: ServerFactory) -> StartServer:
    """``await start(live_limits=..., **settings)``: a real server with a quick demo model,
    stopped after the test."""

    async def run(**overrides: Any) -> RunningServer:
        return await server_factory(**{"demo_delay_ms": 5, **overrides})

    return run


async def connect(server: RunningServer) -> socketio.AsyncClient:
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(server.url, transports=["websocket"], wait_timeout=10)
    return sio


async def call(sio: socketio.AsyncClient, event: str, *args: Any) -> Any:
    """An event with an ack; ``args`` go out as they are (several of them, or none)."""
    data: Any = args[0] if len(args) == 1 else tuple(args) if args else None
    return await sio.call(event, data, timeout=10)


# The character library's streams (written at start-up) are not rooms.
_ROOMS_ONLY = ~events.c.room_id.startswith("character:")


async def event_count(server: RunningServer) -> int:
    """Events in the rooms' streams."""
    query = select(func.count()).select_from(events).where(_ROOMS_ONLY)
    async with server.services.db.reader.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def log_of(server: RunningServer) -> list[tuple[str, int, str, dict[str, Any]]]:
    """Every event of the rooms as (room, version, type, data), in log order."""
    async with server.services.db.reader.connect() as conn:
        rows = await conn.execute(select(events).where(_ROOMS_ONLY).order_by(events.c.position))
        return [(r.room_id, r.version, r.type, json.loads(r.data)) for r in rows]

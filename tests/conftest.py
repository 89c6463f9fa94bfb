"""Shared fixtures: real databases (SQLite file, the machine's PostgreSQL) and a real server."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.support.settings import free_port, make_settings

__all__ = ["free_port", "make_settings"]  # free_port: older tests import it from here
from tomchat.app import create_app
from tomchat.services import Services
from tomchat.settings import Settings
from tomchat.store.database import Database
from tomchat.store.event_store import EventStore
from tomchat.store.migrate import upgrade_async

PG_ADMIN_URL = os.environ.get("TOMCHAT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TOMCHAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    """Skip (saying why) where the service is missing; in CI a missing service is a failure."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message}; CI must run these tests against it")
    pytest.skip(f"{message}; start it to run this test (see README, Tests)")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'tomchat.db'}"


def _pg_admin(sql: str) -> None:
    import asyncpg

    async def run() -> None:
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute(sql)
        finally:
            await admin.close()

    asyncio.run(run())


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"tomchat_test_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same tests on both backends."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'tomchat.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    await upgrade_async(database_url)
    db = Database(database_url)
    event_store = EventStore(db)
    event_store.start()
    yield event_store
    await event_store.close()
    await db.dispose()


@dataclass
class RunningServer:
    url: str
    services: Services
    settings: Settings


async def start_server(settings: Settings) -> tuple[RunningServer, Any]:
    app = create_app(settings)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", settings.port))
    config = uvicorn.Config(app, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(20):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
    running = RunningServer(f"http://127.0.0.1:{settings.port}", app.services, settings)

    async def stop() -> None:
        server.should_exit = True
        await task
        sock.close()

    return running, stop


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[RunningServer]:
    """A real server (uvicorn, in this event loop) for these settings, while inside."""
    running, stop = await start_server(settings)
    try:
        yield running
    finally:
        await stop()


ServerFactory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def server_factory(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """``await server_factory(**settings)``: a real server with ``make_settings(tmp_path,
    **settings)`` (or ``settings=`` made by hand), stopped after the test. Several servers
    of one test get a database and media folder each."""
    async with AsyncExitStack() as stack:
        count = 0

        async def start(settings: Settings | None = None, **overrides: Any) -> RunningServer:
            nonlocal count
            if settings is None:
                settings = make_settings(tmp_path, name=f"server{count}", **overrides)
            count += 1
            return await stack.enter_async_context(serve(settings))

        yield start


@pytest.fixture
def server_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, demo_delay_ms=30)


@pytest.fixture
async def server(server_settings: Settings) -> AsyncIterator[RunningServer]:
    async with serve(server_settings) as running:
        yield running

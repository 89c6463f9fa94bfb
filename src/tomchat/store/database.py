"""Connections to the event store's database."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tomchat.domain.errors import ConfigError, TomchatError
from tomchat.store.recorders import Recorder, recorder_class
from tomchat.store.recorders.base import SessionSettings, T


class StoreUnavailable(TomchatError):
    """The database cannot take this request now (down, full, read-only)."""


def check_database_url(url: str) -> type[Recorder]:
    """Fail early, in one line, on a URL tomchat cannot use; else the backend's recorder."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"TOMCHAT_DATABASE_URL is not a database URL: {url!r}") from None
    try:
        backend = recorder_class(url)
    except ValueError as exc:
        raise ConfigError(
            f"TOMCHAT_DATABASE_URL: {exc} (use sqlite+aiosqlite:///path or "
            "postgresql+asyncpg://user@host/db)"
        ) from None
    if (problem := backend.url_problem(parsed)) is not None:
        raise ConfigError(f"TOMCHAT_DATABASE_URL: {problem}")
    return backend


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    return (
        Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None
    )


class Database:
    def __init__(self, url: str, timeouts: SessionSettings | None = None) -> None:
        self.url = url
        backend = check_database_url(url)
        if (path := sqlite_path(url)) is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # Everything that differs between backends is the recorder's (``store.recorders``).
        self.recorder: Recorder = backend(url, timeouts)
        self.writer: AsyncEngine = self.recorder.writer
        self.reader: AsyncEngine = self.recorder.reader

    def snapshot(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A read-only transaction that sees one consistent state of the log."""
        return self.recorder.snapshot()

    async def read_short(self, work: Callable[[Connection], T]) -> T:
        """One read transaction as one synchronous function (``Recorder.read_short``)."""
        return await self.recorder.read_short(work)

    async def write_short(self, work: Callable[[Connection], T]) -> T:
        """One short write transaction as one synchronous function (``Recorder.write_short``)."""
        return await self.recorder.write_short(work)

    async def ping(self) -> bool:
        try:
            async with self.reader.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        await self.recorder.dispose()

"""Connections to the event store's database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tomchat.domain.errors import ConfigError, TomchatError
from tomchat.store.dialect import Dialect, dialect_for


class StoreUnavailable(TomchatError):
    """The database cannot take this request now (down, full, read-only)."""


def check_database_url(url: str) -> Dialect:
    """Fail early, in one line, on a URL tomchat cannot use."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"TOMCHAT_DATABASE_URL is not a database URL: {url!r}") from None
    try:
        dialect = dialect_for(url)
    except ValueError as exc:
        raise ConfigError(
            f"TOMCHAT_DATABASE_URL: {exc} (use sqlite+aiosqlite:///path or "
            "postgresql+asyncpg://user@host/db)"
        ) from None
    if dialect.is_sqlite:
        if parsed.drivername != "sqlite+aiosqlite":
            raise ConfigError(
                "TOMCHAT_DATABASE_URL: SQLite needs the async driver: sqlite+aiosqlite"
            )
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigError("TOMCHAT_DATABASE_URL: SQLite needs a file path, not memory")
    elif parsed.drivername != "postgresql+asyncpg":
        raise ConfigError(
            "TOMCHAT_DATABASE_URL: PostgreSQL needs the async driver: postgresql+asyncpg"
        )
    return dialect


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    return (
        Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None
    )


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = check_database_url(url)
        if (path := sqlite_path(url)) is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.writer: AsyncEngine
        self.reader: AsyncEngine
        self.writer, self.reader = self.dialect.create_engines(url)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction that sees one consistent state of the log."""
        async with self.reader.connect() as conn, conn.begin():
            yield conn

    async def ping(self) -> bool:
        try:
            async with self.reader.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        await self.writer.dispose()
        await self.reader.dispose()

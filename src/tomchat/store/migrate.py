"""Run Alembic from inside tomchat (``tomchat db upgrade``, ``tomchat serve``).

The migrations are package data (``tomchat/store/migrations``), found through
``importlib.resources``: an installed wheel migrates from any working folder, with no
``alembic.ini`` beside it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncConnection

from tomchat.store.database import check_database_url, sqlite_path


@contextlib.contextmanager
def migrations_folder() -> Iterator[Path]:
    # A real folder even if the package were zipped: Alembic reads the scripts by path.
    with resources.as_file(resources.files("tomchat.store") / "migrations") as folder:
        yield folder


def alembic_config(database_url: str, script_location: Path) -> Config:
    config = Config()  # no ini file: everything it would say is set here
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str) -> None:
    """Bring the database to the newest schema. Blocking: call before the loop or in a thread."""
    check_database_url(database_url)
    if (path := sqlite_path(database_url)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    with migrations_folder() as folder:
        # "heads": migrations written side by side (each revising the same parent) are
        # independent branches; upgrading to every head applies them all without a merge.
        command.upgrade(alembic_config(database_url, folder), "heads")


async def upgrade_async(database_url: str) -> None:
    # Alembic's env runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(upgrade, database_url)


def newest_revisions() -> set[str]:
    with migrations_folder() as folder:
        return set(ScriptDirectory(str(folder)).get_heads())


async def current_revisions(conn: AsyncConnection) -> set[str]:
    """The revisions this database is at (empty before the first migration)."""

    def read(sync_conn: object) -> set[str]:
        return set(MigrationContext.configure(sync_conn).get_current_heads())  # type: ignore[arg-type]

    return await conn.run_sync(read)


async def is_current(conn: AsyncConnection) -> bool:
    return await current_revisions(conn) == newest_revisions()

"""Operator commands: ``tomchat rooms delete``, ``tomchat backup``, ``tomchat doctor``."""

from __future__ import annotations

import asyncio
import shlex
import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, select
from sqlalchemy.engine import make_url

from tomchat.domain.errors import TomchatError
from tomchat.media.files import MediaStore
from tomchat.settings import Settings
from tomchat.store.database import Database, sqlite_path
from tomchat.store.reads import read_events
from tomchat.store.schema import events, metadata


class OpsError(TomchatError):
    """Printed as one line by the CLI."""


# -- rooms delete ----------------------------------------------------------------------------


@dataclass
class RoomDeletion:
    room_id: str
    events: int = 0
    rows: dict[str, int] = field(default_factory=dict)  # other tables: rows removed
    files: list[str] = field(default_factory=list)  # media files removed
    presence_keys: int = 0


def _audio_names(recorded: object) -> set[str]:
    url = getattr(getattr(recorded, "event", None), "audio_url", None)
    name = MediaStore.name_of(url) if isinstance(url, str) else None
    return {name} if name else set()


async def delete_room(settings: Settings, room_id: str) -> RoomDeletion:
    """Everything that names the room: its events, every table with a ``room_id`` column (the
    stream row, the message projection, the reply lease, the invite token, and whatever later
    migrations add), its audio files and its presence in Redis. One transaction for the rows;
    the files go after it commits, so a failure never leaves rows pointing at missing audio."""
    db = Database(settings.database_url)
    done = RoomDeletion(room_id)
    try:
        async with db.reader.connect() as conn:
            names: set[str] = set()
            for recorded in await read_events(conn, room_id):
                names |= _audio_names(recorded)
            audio = metadata.tables["messages"].c.audio_url
            room = metadata.tables["messages"].c.room_id
            for (url,) in await conn.execute(select(audio).where(room == room_id)):
                if url and (name := MediaStore.name_of(url)):
                    names.add(name)
        async with db.writer.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                if "room_id" not in table.c:
                    continue
                result = await conn.execute(delete(table).where(table.c.room_id == room_id))
                if table is events:
                    done.events = result.rowcount
                elif result.rowcount:
                    done.rows[table.name] = result.rowcount
    finally:
        await db.dispose()
    media = MediaStore(settings.media_dir)
    for name in sorted(names):
        if media.exists(name):
            media.delete(name)
            done.files.append(name)
    if settings.redis_url:
        import redis.asyncio as redis

        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3)
        try:
            done.presence_keys = int(
                await client.delete(f"{settings.redis_prefix}:presence:{room_id}")
            )
        finally:
            await client.aclose()
    return done


# -- backup ----------------------------------------------------------------------------------


def backup_sqlite(source: Path, target: Path, pages_per_step: int = 1024) -> int:
    """SQLite's online backup: a consistent copy while servers keep writing; the pages copied.

    Written beside ``target`` and renamed, so the file appears whole or not at all."""
    partial = target.with_name(target.name + ".part")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst, pages=pages_per_step)
            (pages,) = dst.execute("PRAGMA page_count").fetchone()
        finally:
            dst.close()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    partial.replace(target)
    return int(pages)


def pg_dump_command(database_url: str, target: Path) -> str:
    """The ``pg_dump`` line for this database: libpq's URL, no password (``PGPASSWORD``)."""
    url = make_url(database_url).set(drivername="postgresql", password=None)
    return shlex.join(
        [
            "pg_dump",
            "--format=custom",
            "--no-owner",
            f"--file={target}",
            f"--dbname={url.render_as_string(hide_password=False)}",
        ]
    )


# -- doctor ----------------------------------------------------------------------------------

OK, WARN, FAIL, OFF = "ok", "warn", "FAIL", "off"
PROBE_SECONDS = 3.0


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


async def _http_probe(name: str, url: str, headers: dict[str, str]) -> Check:
    """One cheap GET: any HTTP answer means the service is there; 401/403 mean it refuses
    the key."""
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=PROBE_SECONDS) as client:
            response = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return Check(name, FAIL, f"{url}: {_reason(exc) or 'no answer'}")
    ms = round((time.monotonic() - started) * 1000)
    if response.status_code in (401, 403):
        return Check(name, FAIL, f"{url}: HTTP {response.status_code}, the key is refused")
    status = OK if response.status_code < 400 else WARN
    return Check(name, status, f"{url}: HTTP {response.status_code} in {ms} ms")


def _bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


async def _database(settings: Settings) -> list[Check]:
    from tomchat.store.migrate import current_revisions, newest_revisions

    path = sqlite_path(settings.database_url)
    if path is not None and not path.exists():
        return [
            Check("database", FAIL, f"no SQLite file at {path}"),
            Check("migrations", FAIL, "no database"),
        ]
    db = Database(settings.database_url)
    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    try:
        async with asyncio.timeout(PROBE_SECONDS * 2), db.reader.connect() as conn:
            current = await current_revisions(conn)
    except Exception as exc:
        reason = _reason(getattr(exc, "orig", None) or exc)
        return [Check("database", FAIL, f"{shown}: {reason}"), Check("migrations", FAIL, "-")]
    finally:
        await db.dispose()
    newest = newest_revisions()
    if current == newest:
        migrations = Check("migrations", OK, f"at {', '.join(sorted(newest))}")
    else:
        at = ", ".join(sorted(current)) or "none"
        migrations = Check(
            "migrations",
            FAIL,
            f"at {at}, newest {', '.join(sorted(newest))}: run `tomchat db upgrade`",
        )
    return [Check("database", OK, f"{shown} reachable"), migrations]


async def _redis(settings: Settings) -> Check:
    if not settings.redis_url:
        return Check("redis", OFF, "TOMCHAT_REDIS_URL not set: one process, nothing shared")
    import redis.asyncio as redis

    parts = urlsplit(settings.redis_url)
    shown = f"{parts.hostname}:{parts.port or 6379}"
    client = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=PROBE_SECONDS, socket_timeout=PROBE_SECONDS
    )
    try:
        await client.ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        return Check("redis", FAIL, f"{shown}: {_reason(exc)}")
    finally:
        await client.aclose()
    return Check("redis", OK, f"{shown} answers")


async def _llm(settings: Settings) -> Check:
    name = f"llm ({settings.llm})"
    if settings.llm == "demo":
        return Check(name, OK, "the built-in demo character: nothing to reach")
    if settings.llm == "openai":
        base = (settings.llm_base_url or "https://api.openai.com/v1").rstrip("/")
        return await _http_probe(name, f"{base}/models", _bearer(settings.llm_api_key))
    if settings.llm_base_url:
        return await _http_probe(name, settings.llm_base_url, _bearer(settings.llm_api_key))
    return Check(name, WARN, "no TOMCHAT_LLM_BASE_URL to probe")


async def _fish(kind: str, provider: str, settings: Settings) -> Check:
    name = f"{kind} ({provider})"
    if provider == "none":
        return Check(name, OFF, f"TOMCHAT_{kind.upper()}=none")
    if not settings.fish_api_key:
        return Check(name, FAIL, "FISH_API_KEY is not set")
    base = settings.fish_base_url.rstrip("/")
    return await _http_probe(name, f"{base}/model?page_size=1", _bearer(settings.fish_api_key))


def _disk(name: str, folder: Path) -> Check:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # a folder not made yet: the disk it will be made on
    usage = shutil.disk_usage(probe)
    free_gb, share = usage.free / 1e9, usage.free / usage.total if usage.total else 0.0
    detail = f"{folder}: {free_gb:,.1f} GB free ({share:.0%})"
    status = FAIL if usage.free < 100e6 else WARN if usage.free < 1e9 or share < 0.05 else OK
    return Check(name, status, detail)


async def _probes(settings: Settings) -> list[Check]:
    checks = await _database(settings)
    probes: list[Awaitable[Check]] = [
        _redis(settings),
        _llm(settings),
        _fish("tts", settings.tts, settings),
        _fish("asr", settings.asr, settings),
    ]
    return checks + list(await asyncio.gather(*probes))


def doctor(settings: Settings) -> list[Check]:
    """Every check, in the table's order; the network probes run at once."""
    checks = asyncio.run(_probes(settings))
    path = sqlite_path(settings.database_url)
    if path is not None:
        checks.append(_disk("disk (database)", path.resolve().parent))
    checks.append(_disk("disk (media)", Path(settings.media_dir).resolve()))
    return checks


def table(rows: list[tuple[str, ...]], write: Callable[[str], None]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())

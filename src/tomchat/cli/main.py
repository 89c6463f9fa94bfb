"""The ``tomchat`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sqlite3
import sys
import tempfile
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.engine import make_url

from tomchat import logs
from tomchat.chat.export import FORMATS
from tomchat.domain.errors import ConfigError, TomchatError
from tomchat.settings import Settings


class CliError(TomchatError):
    """Printed as one line, no traceback."""


def _redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def _migrate(settings: Settings) -> None:
    from tomchat.store.migrate import upgrade

    try:
        upgrade(settings.database_url)
    except ConfigError:
        raise
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise CliError(
            f"cannot open the database {_redacted(settings.database_url)}: {reason}"
        ) from None


def _check_redis(url: str) -> None:
    """A scaled-out server without its Redis would serve its own sockets only: say so now."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CliError(f"cannot reach Redis at {_redacted_redis(url)}: {reason}") from None


def _redacted_redis(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


# After SIGTERM the app has drained (replies closed, sockets closed: see lifecycle.py); a
# request still open after this long is cut off rather than holding the exit.
GRACE_SECONDS = 1


@contextlib.contextmanager
def _metrics_folder() -> Iterator[None]:
    """Workers write their metrics side by side for /metrics to sum (prometheus-client's
    multi-process mode); a folder of their own unless the operator chose one."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="tomchat-metrics-") as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from tomchat.app import create_app, uvicorn_options

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = Settings.from_env(**overrides)
    workers: int = args.workers
    if workers < 1:
        raise CliError(f"--workers must be at least 1, got {workers}")
    if workers > 1 and not settings.redis_url:
        raise CliError(
            f"--workers {workers} needs TOMCHAT_REDIS_URL: the processes reach each "
            "other's sockets through Redis"
        )
    _migrate(settings)
    if settings.redis_url:
        _check_redis(settings.redis_url)
    sock = _listen(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    processes = f"{workers} worker processes, " if workers > 1 else ""
    serving = (
        f"tomchat serving on http://{host}:{port} "
        f"({processes}database {_redacted(settings.database_url)})"
    )
    if settings.log_format == "json":
        logging.getLogger("tomchat").info(serving)  # every line of output is JSON
    else:
        print(serving, flush=True)
    if workers == 1:
        app = create_app(settings, migrate=False)
        config = uvicorn.Config(
            app,
            **uvicorn_options(settings),
            lifespan="on",
            log_level="info",
            log_config=logs.uvicorn_log_config(settings.log_format),
            timeout_graceful_shutdown=GRACE_SECONDS,
        )
        uvicorn.Server(config).run(sockets=[sock])
        return
    from uvicorn.supervisors import Multiprocess

    # N processes accept on the one listening socket; each builds its own app from the
    # environment (the command's --host/--port only chose that socket). uvicorn's
    # supervisor restarts a worker that dies and passes SIGTERM on to every worker.
    config = uvicorn.Config(
        "tomchat.app:create_worker_app",
        factory=True,
        workers=workers,
        **uvicorn_options(settings),
        lifespan="on",
        log_level="info",
        log_config=logs.uvicorn_log_config(settings.log_format),
        timeout_graceful_shutdown=GRACE_SECONDS,
    )
    with _metrics_folder():
        Multiprocess(config, sockets=[sock]).run()


def cmd_db_upgrade(_args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    _migrate(settings)
    print(f"database {_redacted(settings.database_url)} is at the newest schema")


def cmd_rebuild(args: argparse.Namespace) -> None:
    from tomchat.store.database import Database
    from tomchat.store.rebuild import rebuild_projections

    settings = Settings.from_env()
    _migrate(settings)

    async def run() -> None:
        db = Database(settings.database_url)
        try:
            report = await rebuild_projections(db, check_only=args.check)
        finally:
            await db.dispose()
        verb = "checked" if args.check else "rebuilt"
        print(f"{verb} {report.rows} message rows; {report.differences} differed")
        if args.check and report.differences:
            raise CliError("the projection differs from the log: run `tomchat projections rebuild`")

    asyncio.run(run())


def _open_for_reading(settings: Settings) -> None:
    """Reading commands never create a database: a missing SQLite file is a mistyped path."""
    from tomchat.store.database import sqlite_path

    path = sqlite_path(settings.database_url)
    if path is not None and not path.exists():
        raise CliError(f"no database at {path} (set TOMCHAT_DATABASE_URL)")
    _migrate(settings)


def _stamp(at: datetime | None) -> str:
    return at.isoformat(sep=" ", timespec="seconds")[:19] if at else "-"


def cmd_rooms(args: argparse.Namespace) -> None:
    from tomchat.store.database import Database
    from tomchat.store.rooms import RoomReader
    from tomchat.store.transcripts import TranscriptReader

    settings = Settings.from_env()
    _open_for_reading(settings)

    async def run() -> None:
        db = Database(settings.database_url)
        try:
            rooms = await RoomReader(db).rooms(limit=args.limit)
            counts = await TranscriptReader(db).message_counts([r.id for r in rooms])
        finally:
            await db.dispose()
        if not rooms:
            print("no rooms yet")
            return
        table = [("ROOM", "NAME", "MESSAGES", "EVENTS", "LAST ACTIVITY (UTC)")]
        table += [
            (r.id, r.name or "", str(counts.get(r.id, 0)), str(r.version), _stamp(r.updated_at))
            for r in rooms
        ]
        widths = [max(len(row[i]) for row in table) for i in range(5)]
        for row in table:
            cells = [
                c.rjust(w) if i in (2, 3) else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            print("  ".join(cells).rstrip())

    asyncio.run(run())


def cmd_rooms_host(args: argparse.Namespace) -> None:
    """A fresh host token for an existing room (the previous one stops working)."""
    from tomchat.chat.identity import digest, new_secret
    from tomchat.store.database import Database
    from tomchat.store.rooms import RoomReader
    from tomchat.store.schema import room_hosts

    settings = Settings.from_env()
    _open_for_reading(settings)

    async def run() -> str:
        from datetime import UTC, datetime

        from sqlalchemy import update

        db = Database(settings.database_url)
        try:
            if await RoomReader(db).room(args.room) is None:
                raise CliError(f"no room {args.room!r}")
            token = new_secret()
            async with db.writer.begin() as conn:
                changed = await conn.execute(
                    update(room_hosts)
                    .where(room_hosts.c.room_id == args.room)
                    .values(token_hash=digest(token))
                )
                if not changed.rowcount:
                    await conn.execute(
                        room_hosts.insert().values(
                            room_id=args.room,
                            token_hash=digest(token),
                            created_at=datetime.now(UTC),
                        )
                    )
            return token
        finally:
            await db.dispose()

    token = asyncio.run(run())
    print(token)
    print(
        f"host token of {args.room}: join with it (joinRoom hostToken, or the web page's "
        "host link) or send it as X-Host-Token; any earlier host token stops working",
        file=sys.stderr,
    )


def cmd_export(args: argparse.Namespace) -> None:
    from tomchat.chat.export import formatter
    from tomchat.cli.terminal import Progress
    from tomchat.store.database import Database
    from tomchat.store.transcripts import Span, TranscriptReader, parse_bound

    try:
        span = Span(parse_bound("--from", args.start), parse_bound("--to", args.end))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    settings = Settings.from_env()
    _open_for_reading(settings)
    target = Path(args.output) if args.output else None
    if target is not None and not target.parent.is_dir():
        raise CliError(f"cannot write {target}: no folder {target.parent}")

    async def run() -> None:
        db = Database(settings.database_url)
        try:
            reader = TranscriptReader(db)
            summary = await reader.summary(args.room, span)
            if summary is None:
                raise CliError(f"no room {args.room!r}")
            show = args.progress
            if show is None:  # by default only where someone watches a long export
                show = sys.stderr.isatty() and summary.count >= 2000
            progress = Progress(summary.count, sys.stderr) if show else None
            writer = formatter(args.format, summary, args.base_url)
            # A file appears whole or not at all: written beside its name, then renamed.
            partial = target.with_name(target.name + ".part") if target else None
            out = partial.open("wb") if partial else sys.stdout.buffer
            try:
                out.write(writer.start().encode())
                async for rows in reader.message_pages(summary):
                    out.write(writer.page(rows).encode())
                    if progress:
                        progress.advance(len(rows))
                out.write(writer.end().encode())
            except BaseException:
                if partial:
                    out.close()
                    partial.unlink(missing_ok=True)
                raise
            if partial and target:
                out.close()
                partial.replace(target)
            else:
                out.flush()
            if progress:
                progress.close()
            if target:
                print(
                    f"exported {summary.count:,} messages of {args.room} to {target}",
                    file=sys.stderr,
                )
        finally:
            await db.dispose()

    try:
        asyncio.run(run())
    except OSError as exc:
        raise CliError(f"cannot write the transcript: {exc.strerror or exc}") from None


def cmd_replay(args: argparse.Namespace) -> None:
    from tomchat.cli.terminal import ReplayPrinter
    from tomchat.domain.pacing import KeepAlive, paced
    from tomchat.store.database import Database
    from tomchat.store.transcripts import TranscriptReader

    if not (0 < args.speed <= 1000):
        raise CliError(f"--speed must be above 0 and at most 1000, not {args.speed:g}")
    if not (0 <= args.max_pause <= 3600):
        raise CliError(f"--max-pause must be 0 to 3600 seconds, not {args.max_pause:g}")
    settings = Settings.from_env()
    _open_for_reading(settings)
    printer = ReplayPrinter(sys.stdout, color=None)  # colours only where they show

    async def run() -> None:
        db = Database(settings.database_url)
        try:
            reader = TranscriptReader(db)
            head = await reader.head(args.room)
            if not head:
                raise CliError(f"no room {args.room!r}")
            pages = reader.event_pages(args.room, args.after, upto=head)
            async for item in paced(pages, args.speed, args.max_pause):
                if not isinstance(item, KeepAlive):
                    printer.show(item)
        finally:
            printer.finish()
            await db.dispose()

    asyncio.run(run())


def cmd_rooms_delete(args: argparse.Namespace) -> None:
    from tomchat.cli.ops import delete_room
    from tomchat.store.database import Database
    from tomchat.store.rooms import RoomReader

    settings = Settings.from_env()
    _open_for_reading(settings)

    async def head() -> int | None:
        db = Database(settings.database_url)
        try:
            room = await RoomReader(db).room(args.room)
        finally:
            await db.dispose()
        return room.version if room is not None else None

    version = asyncio.run(head())
    if version is None:
        raise CliError(f"no room {args.room!r}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("not on a terminal: pass --yes to delete without asking")
        answer = input(
            f"Delete room {args.room!r}: its {version} events, messages and audio files, "
            "for good? Type the room id to confirm: "
        )
        if answer.strip() != args.room:
            raise CliError("not deleted: the answer was not the room id")
    done = asyncio.run(delete_room(settings, args.room))
    rows = ", ".join(f"{n} {t}" for t, n in sorted(done.rows.items())) or "no other rows"
    print(
        f"deleted room {args.room}: {done.events} events, {rows}, "
        f"{len(done.files)} audio files" + (", its presence in Redis" if done.presence_keys else "")
    )


def cmd_backup(args: argparse.Namespace) -> None:
    from tomchat.cli.ops import backup_sqlite, pg_dump_command
    from tomchat.store.database import check_database_url, sqlite_path

    settings = Settings.from_env()
    check_database_url(settings.database_url)
    target = Path(args.file)
    source = sqlite_path(settings.database_url)
    if source is None:
        print(
            "PostgreSQL is backed up by its own tool; run (password from PGPASSWORD or ~/.pgpass):",
            file=sys.stderr,
        )
        print(pg_dump_command(settings.database_url, target))
        return
    if not source.exists():
        raise CliError(f"no database at {source} (set TOMCHAT_DATABASE_URL)")
    if target.exists() and not args.force:
        raise CliError(f"{target} exists: choose another name or pass --force")
    if not target.parent.is_dir():
        raise CliError(f"cannot write {target}: no folder {target.parent}")
    try:
        pages = backup_sqlite(source, target)
    except (OSError, sqlite3.Error) as exc:
        raise CliError(f"backup failed: {exc}") from None
    print(f"backed up {source} to {target} ({pages:,} pages, {target.stat().st_size:,} bytes)")


def cmd_doctor(_args: argparse.Namespace) -> None:
    from tomchat.cli.ops import FAIL, doctor, table

    settings = Settings.from_env()
    checks = doctor(settings)
    table([("CHECK", "STATUS", "DETAIL"), *((c.name, c.status, c.detail) for c in checks)], print)
    failed = [c.name for c in checks if c.status == FAIL]
    if failed:
        raise CliError(f"{len(failed)} check(s) failed: {', '.join(failed)}")


DELETE_HELP = """Delete a room for good: its events, its rows in every table that names the room (messages,
stream, reply lease, invite token), its audio files and its presence in Redis.

The event log is append-only: nothing else ever removes an event. This is the one way the log
forgets, and it forgets a whole room: there is no undo (take a `tomchat backup` first). Run it
while no one is in the room; a server still holding the room may write to it again.
"""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="tomchat", description="Multiplayer AI character chat.")
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate the database and serve HTTP + Socket.IO")
    serve.add_argument("--host", help="address to listen on (TOMCHAT_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (TOMCHAT_PORT)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port (more than 1 needs TOMCHAT_REDIS_URL)",
    )
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    db.add_parser("upgrade", help="run the migrations").set_defaults(func=cmd_db_upgrade)

    proj = sub.add_parser("projections", help="the read models built from the log")
    proj_sub = proj.add_subparsers(dest="projections", required=True)
    rebuild = proj_sub.add_parser("rebuild", help="replay the log into fresh tables")
    rebuild.add_argument("--check", action="store_true", help="compare only, change nothing")
    rebuild.set_defaults(func=cmd_rebuild)

    rooms = sub.add_parser("rooms", help="list the rooms, most recently active first")
    rooms.add_argument("--limit", type=int, default=200, help="at most this many (200)")
    rooms.set_defaults(func=cmd_rooms)
    rooms_sub = rooms.add_subparsers(dest="rooms_command")
    host = rooms_sub.add_parser("host", help="print a fresh host token for a room")
    host.add_argument("room", help="the room id")
    host.set_defaults(func=cmd_rooms_host)
    delete = rooms_sub.add_parser(
        "delete",
        help="delete a room for good: the one way the log forgets",
        description=DELETE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    delete.add_argument("room", help="the room id")
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask to confirm")
    delete.set_defaults(func=cmd_rooms_delete)

    backup = sub.add_parser(
        "backup",
        help="copy the database to FILE (SQLite: online backup; PostgreSQL: prints pg_dump's line)",
    )
    backup.add_argument("file", help="where to write the copy")
    backup.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    backup.set_defaults(func=cmd_backup)

    doctor = sub.add_parser(
        "doctor",
        help="check database, migrations, Redis, providers and disk space, in one table",
    )
    doctor.set_defaults(func=cmd_doctor)

    export = sub.add_parser("export", help="write a room's transcript to a file or stdout")
    export.add_argument("room", help="the room id")
    export.add_argument("--format", choices=FORMATS, default="markdown", help="(markdown)")
    export.add_argument("-o", "--output", help="file to write (default: stdout)")
    export.add_argument("--from", dest="start", help="first version or ISO time (inclusive)")
    export.add_argument("--to", dest="end", help="last version or ISO time (inclusive)")
    export.add_argument(
        "--base-url", help="server address for audio links, e.g. https://chat.example"
    )
    export.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="progress bar on stderr (default: for a large room, on a terminal)",
    )
    export.set_defaults(func=cmd_export)

    replay = sub.add_parser("replay", help="play a room's conversation again in the terminal")
    replay.add_argument("room", help="the room id")
    replay.add_argument("--speed", type=float, default=1.0, help="1 = the original pace (1)")
    replay.add_argument("--max-pause", type=float, default=2.0, help="longest wait, seconds (2)")
    replay.add_argument("--after", type=int, default=0, help="start after this room version")
    replay.set_defaults(func=cmd_replay)
    return top


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        logs.configure(Settings.from_env().log_format)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        args.func(args)
    except (ConfigError, CliError) as exc:
        print(f"tomchat: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        # Ctrl-C (uvicorn passes a served SIGINT on as this, after the app has shut down
        # cleanly): everything is written, and the interpreter's own teardown (a full garbage
        # collection of a big heap) would only hold the exit up by a second or more.
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(130)


if __name__ == "__main__":
    main()

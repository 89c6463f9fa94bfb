"""The ``tomchat`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from collections.abc import Sequence

from sqlalchemy.engine import make_url

from tomchat.settings import ConfigError, Settings


class CliError(Exception):
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


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from tomchat.app import create_app

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = Settings.from_env(**overrides)
    _migrate(settings)
    sock = _listen(settings.host, settings.port)
    app = create_app(settings, migrate=False)
    host, port = sock.getsockname()[:2]
    print(f"tomchat serving on http://{host}:{port} (database {_redacted(settings.database_url)})")
    config = uvicorn.Config(app, lifespan="on", log_level="info", timeout_graceful_shutdown=10)
    uvicorn.Server(config).run(sockets=[sock])


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


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="tomchat", description="Multiplayer AI character chat.")
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate the database and serve HTTP + Socket.IO")
    serve.add_argument("--host", help="address to listen on (TOMCHAT_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (TOMCHAT_PORT)")
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    db.add_parser("upgrade", help="run the migrations").set_defaults(func=cmd_db_upgrade)

    proj = sub.add_parser("projections", help="the read models built from the log")
    proj_sub = proj.add_subparsers(dest="projections", required=True)
    rebuild = proj_sub.add_parser("rebuild", help="replay the log into fresh tables")
    rebuild.add_argument("--check", action="store_true", help="compare only, change nothing")
    rebuild.set_defaults(func=cmd_rebuild)
    return top


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        args.func(args)
    except (ConfigError, CliError) as exc:
        print(f"tomchat: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()

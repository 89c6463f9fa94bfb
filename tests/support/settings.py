"""Settings for a test server: one place that says what a test server looks like."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from tomchat.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_settings(
    tmp_path: Path,
    *,
    name: str = "tomchat",
    env: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """A server of its own: a SQLite file and a media folder under ``tmp_path`` (``name``
    keeps several servers of one test apart) and a free port. Only ``env`` is read as the
    environment (never the machine's); ``overrides`` are any other settings, as
    ``Settings.from_env`` takes them (``database_url`` too)."""
    media = "media" if name == "tomchat" else f"media-{name}"
    defaults: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / f'{name}.db'}",
        "port": free_port(),
        "media_dir": tmp_path / media,
    }
    return Settings.from_env(env or {}, **{**defaults, **overrides})

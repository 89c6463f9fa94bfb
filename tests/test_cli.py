"""The ``tomchat`` command as a person runs it: real processes, real files."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.settings import free_port

pytestmark = pytest.mark.timeout(90)

TOMCHAT = [sys.executable, "-m", "tomchat.cli"]


def run(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TOMCHAT, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_db_upgrade_creates_the_tables(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "t.db"
    done = run(["db", "upgrade"], {"TOMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{db}"})
    assert done.returncode == 0, done.stderr
    tables = {
        r[0]
        for r in sqlite3.connect(db).execute("select name from sqlite_master where type='table'")
    }
    assert {"streams", "events", "messages", "alembic_version"} <= tables


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://x@y/z", "unsupported database URL scheme"),
        ("not a url", "not a database URL"),
        ("sqlite:///plain.db", "async driver"),
        ("postgresql+asyncpg://nobody@127.0.0.1:1/none", "cannot open the database"),
    ],
)
def test_unusable_database_url_is_one_clear_line(url: str, says: str) -> None:
    done = run(["db", "upgrade"], {"TOMCHAT_DATABASE_URL": url})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tomchat: ") and says in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(
            ["serve", "--port", str(port)],
            {"TOMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 't.db'}"},
        )
    assert done.returncode == 2
    assert (
        done.stderr.strip() == f"tomchat: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_bad_port_setting(tmp_path: Path) -> None:
    done = run(["db", "upgrade"], {"TOMCHAT_PORT": "eighty"})
    assert done.returncode == 2 and "TOMCHAT_PORT must be a whole number" in done.stderr


def test_serve_answers_health_and_rebuild_keeps_rows(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TOMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 't.db'}",
        "TOMCHAT_MEDIA_DIR": str(tmp_path / "media"),
    }
    proc = subprocess.Popen(
        [*TOMCHAT, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert health.json() == {"status": "ok", "database": "ok", "redis": "disabled"}
        made = httpx.post(
            f"http://127.0.0.1:{port}/api/rooms", json={"name": "Cli room", "id": "cli"}
        )
        assert made.status_code == 201 and made.json()["version"] == 3
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    output = proc.stdout.read() if proc.stdout else ""
    assert proc.returncode in (0, -15) and "Application shutdown complete" in output, output
    done = run(
        ["projections", "rebuild", "--check"], {"TOMCHAT_DATABASE_URL": env["TOMCHAT_DATABASE_URL"]}
    )
    assert done.returncode == 0 and "checked 1 message rows; 0 differed" in done.stdout, done.stderr
    done = run(["projections", "rebuild"], {"TOMCHAT_DATABASE_URL": env["TOMCHAT_DATABASE_URL"]})
    assert "rebuilt 1 message rows; 0 differed" in done.stdout

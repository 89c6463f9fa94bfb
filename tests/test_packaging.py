"""A new user's install: build the sdist and wheel from a clean copy of the repository, install
the wheel into a fresh venv, then migrate and serve from another folder (through the
container's entrypoint script) and use the UI's server."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.support.room_client import RoomClient

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.node, pytest.mark.timeout(300)]


def clean_copy(target: Path) -> Path:
    """What a clone would hold: tracked and new files, nothing ignored (no node_modules, no
    built client, no venv)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if "node_modules" in Path(name).parts or not source.is_file():
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / name)
    return target


def run(*args: str | Path, **kwargs: object) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=False, **kwargs
    )  # type: ignore[call-overload]
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return str(done.stdout)


def spawn(
    args: list[Path], log: Path, cwd: Path, env: dict[str, str], port: int
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            args,
            cwd=cwd,
            env={**env, "TOMCHAT_HOST": "127.0.0.1", "TOMCHAT_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_wheel_from_a_clean_clone_installs_migrates_and_serves(tmp_path: Path) -> None:
    clone = clean_copy(tmp_path / "clone")
    assert not (clone / "src/tomchat/static").exists()
    run(sys.executable, "-m", "build", "--outdir", tmp_path / "dist", clone)
    [sdist] = (tmp_path / "dist").glob("tomchat-*.tar.gz")
    [wheel] = (tmp_path / "dist").glob("tomchat-*.whl")
    with tarfile.open(sdist) as tar:
        in_sdist = {Path(*Path(n).parts[1:]).as_posix() for n in tar.getnames()}
    assert "src/tomchat/static/index.html" in in_sdist
    assert "src/tomchat/store/migrations/versions/0001_initial.py" in in_sdist
    assert not any(n.startswith("web/") for n in in_sdist), "the sdist carries the built client"
    with zipfile.ZipFile(wheel) as whl:
        in_wheel = set(whl.namelist())
    assert {
        "tomchat/static/index.html",
        "tomchat/store/migrations/env.py",
        "tomchat/store/migrations/script.py.mako",
        "tomchat/store/migrations/versions/0003_room_access.py",
    } <= in_wheel

    # A fresh venv holding only the wheel. Its dependencies are the locked versions this
    # suite runs on, seen through a path entry (not reinstalled: this runs offline and fast);
    # `pip check` proves the wheel's requirements accept them.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    [site] = (venv / "lib").glob("python3*/site-packages")
    (site / "locked_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel)
    run(sys.executable, "-m", "pip", "--python", python, "check")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOMCHAT_", "PYTHON"))}
    env.update(
        PATH=f"{venv / 'bin'}:{env['PATH']}",
        TOMCHAT_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'data' / 'tomchat.db'}",
        TOMCHAT_MEDIA_DIR=str(tmp_path / "data" / "media"),
        TOMCHAT_DEMO_DELAY_MS="5",
    )
    where = run(python, "-c", "import tomchat; print(tomchat.__file__)", cwd=elsewhere, env=env)
    assert Path(where.strip()).is_relative_to(site), where
    assert "is at the newest schema" in run("tomchat", "db", "upgrade", cwd=elsewhere, env=env)

    port = free_port()
    log = tmp_path / "serve.log"
    server = spawn([ROOT / "docker" / "entrypoint.sh"], log, elsewhere, env, port)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if (await http.get("/api/ready", timeout=2)).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.2)
            page = await http.get("/")
            assert page.status_code == 200
            assert '<div id="root">' in page.text
            [script] = re.findall(r'src="(/assets/[^"]+\.js)"', page.text)
            asset = await http.get(script)
            assert asset.status_code == 200
            assert asset.content == (site / "tomchat" / "static" / script[1:]).read_bytes()
        ann = RoomClient(url, "installed", "ann")
        await ann.connect()
        await ann.join()
        await ann.send("hello from a wheel")
        await ann.wait_for(
            lambda c: [x.status for x in c.lines.values() if x.is_ai] == ["complete"] * 2
        )
        assert [x.content for x in ann.lines.values() if not x.is_ai] == ["hello from a wheel"]
        await ann.disconnect()
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert (tmp_path / "data" / "tomchat.db").exists()
    assert not (elsewhere / "data").exists(), "the database is where it was told to be"

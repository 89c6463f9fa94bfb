"""Build hook: a wheel or sdist made from a checkout carries the built web client.

Everything else about the package is in pyproject.toml. From a checkout (``web/`` present)
the client is built with npm into ``src/tomchat/static`` whenever it is missing or older than
its sources; an sdist carries the built client and no ``web/``, so a wheel built from it needs
no Node.js."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
WEB = ROOT / "web"
BUILT = ROOT / "src" / "tomchat" / "static" / "index.html"


def _web_sources() -> list[Path]:
    return [
        p
        for p in WEB.rglob("*")
        if p.is_file() and "node_modules" not in p.relative_to(WEB).parts
    ]


def build_web_client() -> None:
    if not (WEB / "package.json").exists():
        if not BUILT.exists():
            raise SystemExit("tomchat: neither web/ nor a built web client: cannot package the UI")
        return  # an sdist: the client came built
    stale = not BUILT.exists() or max(p.stat().st_mtime for p in _web_sources()) > (
        BUILT.stat().st_mtime
    )
    if not stale and not os.environ.get("TOMCHAT_REBUILD_WEB"):
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise SystemExit(
            "tomchat: building the web client needs Node.js 18+ and npm on PATH "
            "(https://nodejs.org); or build from the sdist, which carries the built client"
        )
    print("tomchat: building the web client (npm ci && npm run build in web/)", flush=True)
    for step in (["ci", "--no-audit", "--no-fund", "--loglevel=error"], ["run", "build"]):
        done = subprocess.run([npm, *step], cwd=WEB, check=False)
        if done.returncode != 0:
            raise SystemExit(f"tomchat: `npm {' '.join(step)}` in web/ failed ({done.returncode})")


class BuildPyWithWeb(build_py):
    def run(self) -> None:
        # An editable install serves src/tomchat/static in place: scripts/serve builds it.
        if not getattr(self, "editable_mode", False):
            build_web_client()
        super().run()


class SdistWithWeb(sdist):
    def run(self) -> None:
        build_web_client()
        super().run()


setup(cmdclass={"build_py": BuildPyWithWeb, "sdist": SdistWithWeb})

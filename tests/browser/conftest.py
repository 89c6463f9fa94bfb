"""Browser tests: a real ``tomchat serve`` process and headless Chromium driven by Playwright.

The server runs as a subprocess, exactly as a person would start it, on its own port,
SQLite file and media folder. Playwright uses the machine's Chromium (never a download
of its own). Screenshots and the server's log go under ``test-output/browser/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from tests.browser.people import Person

if TYPE_CHECKING:
    from tests.fakes.fish import FakeFish

CHROMIUM = Path(os.environ.get("TOMCHAT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A fake microphone, granted without asking, for the voice message test.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
BUILT_INDEX = REPO / "src" / "tomchat" / "static" / "index.html"
OUTPUT = REPO / "test-output" / "browser"
# Slow enough that a reply lasts a few seconds: time to reload or drop mid-reply.
DEMO_DELAY_MS = 90


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything in this folder needs a browser, whether or not the test says so.
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.browser)


def _need_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip(
            f"Chromium is not installed at {CHROMIUM}: "
            "`apt-get update && apt-get install -y chromium` to run the browser tests"
        )


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="session")
def built_client() -> Path:
    """The built web client; built here (npm ci && npm run build) only if missing."""
    if not BUILT_INDEX.is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("the web client is not built and npm is not installed")
        for args in ([npm, "ci", "--no-audit", "--no-fund"], [npm, "run", "build"]):
            done = subprocess.run(args, cwd=WEB, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                pytest.fail(f"{' '.join(args[1:])} failed in web/:\n{done.stdout}\n{done.stderr}")
    return BUILT_INDEX.parent


@dataclass
class ServerProcess:
    url: str
    log: Path


def _tomchat_command() -> list[str]:
    script = Path(sys.executable).parent / "tomchat"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tomchat.cli"]


@contextmanager
def _serve(home: Path, log_path: Path, **settings: str) -> Iterator[ServerProcess]:
    """Run ``tomchat serve`` with a database and media folder in ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOMCHAT_", "FISH_"))}
    env.update(
        TOMCHAT_DATABASE_URL=f"sqlite+aiosqlite:///{home / 't.db'}",
        TOMCHAT_MEDIA_DIR=str(home / "media"),
        TOMCHAT_DEMO_DELAY_MS=str(DEMO_DELAY_MS),
        TOMCHAT_LLM="demo",
        # Every test opens rooms of its own, all from one address.
        TOMCHAT_NEW_ROOMS_PER_MINUTE="100000",
        PYTHONUNBUFFERED="1",
    )
    env.update(settings)  # a test's own settings win (another model, voices)
    with log_path.open("w") as log:
        # Port 0: the server binds a free port and prints it, so there is no race for one.
        # The working directory is the temp folder so that no developer's .env is picked up.
        process = subprocess.Popen(
            [*_tomchat_command(), "serve", "--host", "127.0.0.1", "--port", "0"],
            cwd=home,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = _wait_for_url(process, log_path)
            _wait_healthy(url, process)
            yield ServerProcess(url, log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def tomchat_server(
    built_client: Path, output_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """``tomchat serve`` with the demo character and no voice, for the whole session."""
    _need_chromium()
    with _serve(tmp_path_factory.mktemp("tomchat-server"), output_dir / "server.log") as server:
        yield server


@pytest.fixture(scope="session")
def fake_fish() -> Iterator[FakeFish]:
    """The Fish Audio stand-in (TTS and ASR) of the provider tests; its audio is silent MP3."""
    from tests.fakes.fish import FakeFish

    # Two frames (52 ms) a character: a reply's voice lasts well beyond its text.
    with FakeFish(frames_per_char=2.0) as fish:
        yield fish


@pytest.fixture(scope="session")
def voice_server(
    built_client: Path,
    output_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    fake_fish: FakeFish,
) -> Iterator[ServerProcess]:
    """``tomchat serve`` speaking and listening through the fake Fish Audio."""
    _need_chromium()
    with _serve(
        tmp_path_factory.mktemp("voice-server"),
        output_dir / "voice-server.log",
        TOMCHAT_TTS="fish",
        TOMCHAT_ASR="fish",
        FISH_API_KEY=fake_fish.api_key,
        TOMCHAT_FISH_BASE_URL=fake_fish.url,
    ) as server:
        yield server


@pytest.fixture
def room_server(tomchat_server: ServerProcess) -> ServerProcess:
    """The server the ``people`` of a test use; a test module may override it."""
    return tomchat_server


def _wait_for_url(process: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"serving on (http://\S+)", log_path.read_text(errors="replace"))
        if found:
            return found.group(1)
        if process.poll() is not None:
            pytest.fail(f"tomchat serve exited with {process.returncode}:\n{log_path.read_text()}")
        time.sleep(0.1)
    pytest.fail(f"tomchat serve did not start in time:\n{log_path.read_text()}")


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None:
            pytest.fail(f"tomchat serve exited with {process.returncode}")
        time.sleep(0.1)
    pytest.fail("tomchat serve never answered /api/health")


# Module scope: the sync API's loop is gone before other modules' asyncio tests run.
@pytest.fixture(scope="module")
def playwright_instance() -> Iterator[Playwright]:
    _need_chromium()
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    instance = playwright_instance.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
    )
    yield instance
    instance.close()


PeopleFactory = Callable[[str], Person]

_AUTOPLAY_POLICY = """
(() => {
  let interacted = false;
  for (const type of ["pointerdown", "keydown"]) {
    window.addEventListener(type, (e) => { if (e.isTrusted) interacted = true; }, true);
  }
  const play = HTMLMediaElement.prototype.play;
  HTMLMediaElement.prototype.play = function () {
    if (!interacted) {
      return Promise.reject(new DOMException("play() needs a user gesture", "NotAllowedError"));
    }
    return play.call(this);
  };
})();
"""


@pytest.fixture
def people(browser: Browser, room_server: ServerProcess) -> Iterator[PeopleFactory]:
    """people("ann") opens a fresh browser context whose remembered username is ann
    (people("") one that has never chosen a name)."""
    base_url = room_server.url
    made: list[Person] = []

    def make(name: str) -> Person:
        context = browser.new_context(viewport={"width": 1100, "height": 760})
        if name:
            # The username a person chose in the lobby, as the client remembers it.
            context.add_init_script(
                f"localStorage.getItem('tomchat.username') ?? "
                f"localStorage.setItem('tomchat.username', {json.dumps(name)})"
            )
        # Headless Chromium plays sound without any interaction (and Playwright's pages
        # count as activated from the start), so the desktop rule is put back here: no
        # sound until the person has pressed a key or a pointer on the page.
        context.add_init_script(_AUTOPLAY_POLICY)
        page = context.new_page()
        person = Person(name, base_url, context, page)
        page.on("dialog", lambda d: (person.dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: person.errors.append(str(e)))
        made.append(person)
        return person

    yield make
    for person in made:
        person.context.close()

"""Real ``tomchat serve`` processes for tests that need more than one, or need to kill one."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.settings import free_port

TOMCHAT = [sys.executable, "-m", "tomchat.cli"]


@dataclass
class ServerProcess:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """``kill -9``, and reap it, so nothing of it is left (not even a zombie)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    async def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then wait for the process to end by itself; its exit status."""
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, f"{self.name} ignored SIGTERM:\n{self.output()}"
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def start_servers(
    env: dict[str, str], logs: Path, names: list[str], *, args: list[str] | None = None
) -> list[ServerProcess]:
    """Start ``tomchat serve`` processes side by side and wait until each answers health."""
    servers = [spawn_server(env, logs, name, args or []) for name in names]
    try:
        await asyncio.gather(*(_ready(s) for s in servers))
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return servers


def spawn_server(env: dict[str, str], logs: Path, name: str, args: list[str]) -> ServerProcess:
    port = free_port()
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*TOMCHAT, "serve", "--port", str(port), *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return ServerProcess(name, port, proc, log)


async def _ready(server: ServerProcess, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while True:
            try:
                answer = await http.get(f"{server.url}/api/health", timeout=2)
                if answer.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if server.proc.poll() is not None:
                raise AssertionError(f"{server.name} exited:\n{server.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{server.name} did not start:\n{server.output()}")
            await asyncio.sleep(0.1)

"""How one tomchat process knows itself and reaches the others.

On its own a process needs nothing here: ``LocalBus`` drops what it is given, because nobody
else is listening. Scaled out (``TOMCHAT_REDIS_URL``), ``RedisBus`` carries two small signals
between processes over Redis pub/sub — *kick* (a room has user messages waiting and its
reply loop should look again) and *stop* (the person asked to stop a reply that another
process is writing). Both are hints that make things prompt, never the only way they happen:
the database holds the truth (the log is the reply queue, a stop is also written on the
room's lease), so a hint lost while Redis reconnects costs time, not correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from redis.asyncio import Redis

log = logging.getLogger(__name__)

SignalKind = Literal["kick", "stop"]


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


@dataclass(frozen=True)
class ProcessIdentity:
    """One running process, as other processes see it in lease rows and presence entries.

    ``owner`` is unique to this start of this process (hostname and pid for people, a nonce
    so a reused pid is never the same owner). ``node`` names a machine boot and pid namespace:
    two processes with the same node see the same pids, so one can tell for sure that the
    other has died (a ``kill -9`` leaves a lease behind) without waiting for it to expire.
    """

    owner: str
    node: str | None
    pid: int

    @classmethod
    def current(cls) -> ProcessIdentity:
        pid = os.getpid()
        owner = f"{socket.gethostname()[:120]}:{pid}:{uuid.uuid4().hex[:12]}"
        boot, namespace = _read("/proc/sys/kernel/random/boot_id"), _pid_namespace()
        node = f"{boot}/{namespace}"[:100] if boot and namespace else None
        return cls(owner, node, pid)

    def sees_dead(self, owner: str, node: str | None, pid: int | None) -> bool:
        """True only when it is certain that the process ``owner`` no longer runs.

        Anything uncertain (another machine, another container, no ``/proc``) is False: the
        lease then ends by expiring, which is always safe.
        """
        if owner == self.owner or node is None or pid is None or node != self.node:
            return False
        if pid == self.pid:
            return True  # our pid, yet not our owner id: that process is gone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # someone else's live process now has that pid
        # A killed child its parent has not reaped yet still answers kill(0): a zombie.
        stat = _read(f"/proc/{pid}/stat")
        return stat is not None and stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]


@dataclass(frozen=True)
class Signal:
    kind: SignalKind
    room_id: str
    message_id: str | None = None
    sender: str = ""
    by: str | None = None  # who asked (a stop's username)


SignalHandler = Callable[[Signal], Awaitable[None]]


class Bus(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, signal: Signal) -> None:
        """Tell the other processes; best effort, never raises."""
        ...

    def subscribe(self, handler: SignalHandler) -> None: ...


class LocalBus:
    """One process alone: there is nobody to tell."""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def publish(self, signal: Signal) -> None:
        pass

    def subscribe(self, handler: SignalHandler) -> None:
        pass


class RedisBus:
    """Signals over one Redis pub/sub channel shared by every process of a deployment."""

    def __init__(self, redis: Redis, channel: str, identity: ProcessIdentity) -> None:
        self.redis = redis
        self.channel = channel
        self.identity = identity
        self._handlers: list[SignalHandler] = []
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def subscribe(self, handler: SignalHandler) -> None:
        self._handlers.append(handler)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="cluster-bus")
        # Signals sent after start-up must reach us; wait (briefly) until we listen.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._subscribed.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def publish(self, signal: Signal) -> None:
        body = json.dumps(
            {
                "kind": signal.kind,
                "room_id": signal.room_id,
                "message_id": signal.message_id,
                "sender": self.identity.owner,
                "by": signal.by,
            }
        )
        try:
            await self.redis.publish(self.channel, body)
        except Exception as exc:
            log.warning("could not signal other processes (%s): %s", signal.kind, exc)

    async def _listen(self) -> None:
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._subscribed.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self._dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("lost the Redis signal channel (%s); retrying", exc)
                await asyncio.sleep(1)

    async def _dispatch(self, raw: Any) -> None:
        try:
            data = json.loads(raw)
            by = data.get("by")
            signal = Signal(
                data["kind"],
                data["room_id"],
                data.get("message_id"),
                data["sender"],
                by if isinstance(by, str) else None,
            )
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed signal on %s", self.channel)
            return
        if signal.sender == self.identity.owner:
            return
        for handler in self._handlers:
            try:
                await handler(signal)
            except Exception:
                log.exception("handling signal %s failed", signal.kind)


@dataclass
class Cluster:
    """This process and its ways to the others: Redis when scaled out, else in-process."""

    identity: ProcessIdentity
    bus: Bus
    redis: Redis | None = None
    prefix: str = "tomchat"
    _started: bool = field(default=False, repr=False)

    @classmethod
    def build(
        cls,
        redis_url: str | None,
        prefix: str = "tomchat",
        identity: ProcessIdentity | None = None,
    ) -> Cluster:
        identity = identity or ProcessIdentity.current()
        if not redis_url:
            return cls(identity, LocalBus())
        redis = Redis.from_url(redis_url)
        return cls(identity, RedisBus(redis, f"{prefix}:signals", identity), redis, prefix)

    @property
    def socketio_channel(self) -> str:
        return f"{self.prefix}:socketio"

    async def start(self) -> None:
        if not self._started:
            self._started = True
            await self.bus.start()

    async def close(self) -> None:
        await self.bus.close()
        if self.redis is not None:
            await self.redis.aclose()

    async def ping(self) -> bool | None:
        """None without Redis; otherwise whether Redis answers."""
        if self.redis is None:
            return None
        try:
            async with asyncio.timeout(2):
                return bool(await self.redis.ping())
        except Exception:
            return False

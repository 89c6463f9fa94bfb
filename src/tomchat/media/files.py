"""Audio files: unguessable names, files that are read while they are still being written,
and telling audio formats apart by their bytes.

A file being written has a sidecar marker ``<name>.part`` beside it. Readers follow the file
while the marker exists and stop at its end once the marker is gone, so a listener in another
process (several servers behind Redis, one shared media folder) follows it as well as one in
the writer's own process; the latter is woken at once instead of polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tomchat.domain.errors import TomchatError

AUDIO_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "webm": "audio/webm",
    "ogg": "audio/ogg",
    "wav": "audio/wav",
    "m4a": "audio/mp4",
    "opus": "audio/ogg",
}
_NAME = re.compile(r"^[A-Za-z0-9_-]{16,64}\.(?:" + "|".join(AUDIO_TYPES) + r")$")
_MARKER = ".part"
URL_PREFIX = "/media/"


class MediaNotFound(TomchatError, LookupError):
    pass


def sniff_audio(data: bytes) -> str | None:
    """The container of ``data`` by its magic bytes: webm, ogg, mp3, wav or m4a; else None."""
    head = data[:64]
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: WebM (and Matroska, which decoders share)
        return "webm"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if head[4:8] == b"ftyp":  # ISO base media: Safari records audio/mp4
        return "m4a"
    if head.startswith(b"ID3"):
        return "mp3"
    # A bare MPEG audio frame: 11 sync bits, a real version, layer III, a real bitrate.
    if len(head) >= 4 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        version = (head[1] >> 3) & 0b11
        layer = (head[1] >> 1) & 0b11
        bitrate = head[2] >> 4
        rate = (head[2] >> 2) & 0b11
        if version != 0b01 and layer == 0b01 and bitrate not in (0, 15) and rate != 3:
            return "mp3"
    return None


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._wakeups: dict[str, asyncio.Event] = {}

    # -- names -----------------------------------------------------------------------------

    @staticmethod
    def new_name(ext: str) -> str:
        if ext not in AUDIO_TYPES:
            raise ValueError(f"not an audio type we store: {ext!r}")
        return f"{secrets.token_urlsafe(18)}.{ext}"

    @staticmethod
    def url(name: str) -> str:
        return URL_PREFIX + name

    @staticmethod
    def name_of(url: str) -> str | None:
        name = url.removeprefix(URL_PREFIX) if url.startswith(URL_PREFIX) else None
        return name if name and _NAME.match(name) else None

    @staticmethod
    def content_type(name: str) -> str:
        return AUDIO_TYPES.get(name.rpartition(".")[2], "application/octet-stream")

    def path(self, name: str) -> Path:
        """The file for ``name``; anything that is not one of our names is simply not found."""
        if not _NAME.match(name):
            raise MediaNotFound(name)
        return self.root / name

    def exists(self, name: str) -> bool:
        try:
            return self.path(name).is_file()
        except MediaNotFound:
            return False

    def is_growing(self, name: str) -> bool:
        return (self.root / (name + _MARKER)).exists()

    # -- writing ---------------------------------------------------------------------------

    def open_writer(self, ext: str) -> MediaWriter:
        name = self.new_name(ext)
        path = self.root / name
        # The marker goes first, so no reader ever sees the file without it and stops early.
        (self.root / (name + _MARKER)).touch()
        return MediaWriter(self, name, path, io.FileIO(path, "xb"))

    async def save(self, data: bytes, ext: str) -> str:
        name = self.new_name(ext)
        await asyncio.to_thread(_write_new, self.root / name, data)
        return name

    def delete(self, name: str) -> None:
        with contextlib.suppress(MediaNotFound, FileNotFoundError):
            self.path(name).unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.root / (name + _MARKER)).unlink()
        self._wake(name)

    def _wake(self, name: str) -> None:
        event = self._wakeups.pop(name, None)
        if event is not None:
            event.set()

    def _wakeup(self, name: str) -> asyncio.Event:
        event = self._wakeups.get(name)
        if event is None:
            event = self._wakeups[name] = asyncio.Event()
        return event

    # -- reading ---------------------------------------------------------------------------

    async def follow(
        self,
        name: str,
        *,
        chunk_size: int = 64 * 1024,
        poll: float = 0.05,
        idle_timeout: float = 30.0,
    ) -> AsyncIterator[bytes]:
        """The file's bytes from its start to its end, waiting for more while it grows.

        A writer that died leaves its marker behind; after ``idle_timeout`` without growth
        the reader ends with what there is rather than waiting forever.
        """
        try:
            handle = io.FileIO(self.path(name), "rb")
        except FileNotFoundError:
            raise MediaNotFound(name) from None
        with handle:
            last_growth = time.monotonic()
            while True:
                # Look at the marker before reading: if it was gone before this read, the
                # read saw every byte ever written.
                growing = self.is_growing(name)
                wakeup = self._wakeup(name) if growing else None
                data = handle.read(chunk_size)
                if data:
                    last_growth = time.monotonic()
                    yield data
                    continue
                if not growing:
                    return
                if time.monotonic() - last_growth > idle_timeout:
                    return
                assert wakeup is not None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), poll)


@dataclass(eq=False)
class MediaWriter:
    store: MediaStore
    name: str
    path: Path
    _file: io.FileIO
    bytes_written: int = 0
    closed: bool = False

    @property
    def url(self) -> str:
        return self.store.url(self.name)

    def write(self, data: bytes) -> None:
        """Append ``data``; on disk (in the page cache) when this returns, readers woken."""
        view = memoryview(data)
        while view:
            # An unbuffered file may take only part of it.
            written = self._file.write(view) or 0
            view = view[written:]
        self.bytes_written += len(data)
        self.store._wake(self.name)

    def complete(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            (self.store.root / (self.name + _MARKER)).unlink()
        self.store._wake(self.name)

    def discard(self) -> None:
        """Give up on the file: nothing half-written stays to be served."""
        if not self.closed:
            self.closed = True
            self._file.close()
        self.store.delete(self.name)


def _write_new(path: Path, data: bytes) -> None:
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())

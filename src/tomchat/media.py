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
import math
import os
import re
import secrets
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

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


class MediaNotFound(LookupError):
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


# -- durations -------------------------------------------------------------------------------

_MPEG_BITRATES = {
    # (version is MPEG-1, layer III) and (MPEG-2/2.5, layer III), kbit/s by index
    True: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    False: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {0b11: (44100, 48000, 32000), 0b10: (22050, 24000, 16000), 0b00: (11025, 12000, 8000)}


def mp3_duration_ms(data: bytes) -> int | None:
    """Length of MPEG layer III audio by walking its frames; None if there are none."""
    offset = 0
    if data.startswith(b"ID3") and len(data) >= 10:
        size = data[6] << 21 | data[7] << 14 | data[8] << 7 | data[9]
        offset = 10 + size
    samples = 0.0
    frames = 0
    end = len(data)
    while offset + 4 <= end:
        b1, b2 = data[offset + 1], data[offset + 2]
        version = (b1 >> 3) & 0b11
        if (
            data[offset] != 0xFF
            or (b1 & 0xE0) != 0xE0
            or version == 0b01
            or ((b1 >> 1) & 0b11) != 0b01
        ):
            offset += 1  # resynchronise: junk between frames is skipped, not counted
            continue
        mpeg1 = version == 0b11
        bitrate = _MPEG_BITRATES[mpeg1][b2 >> 4] if (b2 >> 4) != 15 else 0
        rate_index = (b2 >> 2) & 0b11
        if not bitrate or rate_index == 3:
            offset += 1
            continue
        rate = _MPEG_RATES[version][rate_index]
        padding = (b2 >> 1) & 1
        per_frame = 1152 if mpeg1 else 576
        length = (per_frame // 8) * bitrate * 1000 // rate + padding
        if offset + length > end:
            break  # a cut-off last frame is not played
        samples += per_frame / rate
        frames += 1
        offset += length
    return round(samples * 1000) if frames else None


def wav_duration_ms(data: bytes) -> int | None:
    if not (data.startswith(b"RIFF") and data[8:12] == b"WAVE"):
        return None
    offset, byte_rate = 12, 0
    while offset + 8 <= len(data):
        kind = data[offset : offset + 4]
        (size,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        if kind == b"fmt " and size >= 12:
            (byte_rate,) = struct.unpack("<I", data[offset + 16 : offset + 20])
        elif kind == b"data":
            available = min(size, len(data) - offset - 8)
            return round(available * 1000 / byte_rate) if byte_rate else None
        offset += 8 + size + (size & 1)
    return None


def ogg_duration_ms(data: bytes) -> int | None:
    """Opus or Vorbis in Ogg: the last page's granule position over the sample rate."""
    if not data.startswith(b"OggS") or len(data) < 28:
        return None
    head = data[27 + data[26] : 27 + data[26] + 20]  # the first packet, after the lacing
    if head.startswith(b"OpusHead") and len(head) >= 12:
        rate, skip = 48000, struct.unpack("<H", head[10:12])[0]  # Opus always counts 48 kHz
    elif head.startswith(b"\x01vorbis") and len(head) >= 16:
        rate, skip = struct.unpack("<I", head[12:16])[0], 0
    else:
        return None
    end = len(data)
    while (at := data.rfind(b"OggS", 0, end)) >= 0:
        if at + 14 <= len(data) and data[at + 4] == 0:
            (granule,) = struct.unpack("<q", data[at + 6 : at + 14])
            if granule >= 0:  # -1: no packet ends on this page
                return round(max(0, granule - skip) * 1000 / rate) if rate else None
        end = at
    return None


_EBML_MASTERS = {0x18538067, 0x1549A966, 0x1F43B675, 0xA0}  # Segment, Info, Cluster, Group


def _ebml_vint(data: bytes, at: int, *, keep_marker: bool) -> tuple[int | None, int]:
    if at >= len(data) or data[at] == 0:
        raise ValueError("not EBML")
    length = 8 - data[at].bit_length() + 1
    if at + length > len(data):
        raise ValueError("cut off")
    value = int.from_bytes(data[at : at + length], "big")
    if keep_marker:
        return value, length
    value &= (1 << (7 * length)) - 1
    return (None if value == (1 << (7 * length)) - 1 else value), length


def webm_duration_ms(data: bytes) -> int | None:
    """WebM/Matroska: the Info Duration when the muxer wrote one; else (browsers' live
    recordings) the time of the last block, from cluster and block timecodes."""
    scale, cluster = 1_000_000, 0
    duration: float | None = None
    last: int | None = None
    at = 0
    try:
        while at < len(data):
            element, n = _ebml_vint(data, at, keep_marker=True)
            size, m = _ebml_vint(data, at + n, keep_marker=False)
            body = at + n + m
            if element in _EBML_MASTERS:
                at = body  # walk into it: children follow, whatever its size says
                continue
            if size is None or body + size > len(data):
                break
            value = data[body : body + size]
            if element == 0x2AD7B1:  # TimecodeScale, nanoseconds per tick
                scale = int.from_bytes(value, "big") or scale
            elif element == 0x4489 and size in (4, 8):  # Duration, in ticks
                duration = struct.unpack(">f" if size == 4 else ">d", value)[0]
            elif element == 0xE7:  # Cluster Timecode
                cluster = int.from_bytes(value, "big")
            elif element in (0xA3, 0xA1):  # SimpleBlock, Block: track, then int16 offset
                _, t = _ebml_vint(value, 0, keep_marker=False)
                if t + 2 <= len(value):
                    offset = struct.unpack(">h", value[t : t + 2])[0]
                    last = max(last or 0, cluster + offset)
            at = body + size
    except ValueError:
        pass
    ticks: float | None = duration if duration and duration > 0 else last
    if ticks is None or not math.isfinite(ticks):
        return None
    return round(ticks * scale / 1_000_000)


def m4a_duration_ms(data: bytes) -> int | None:
    """MP4 audio: the movie header's duration; None for fragmented files that leave it 0."""
    at = 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        header = 8
        if size == 1 and at + 16 <= len(data):
            size, header = struct.unpack(">Q", data[at + 8 : at + 16])[0], 16
        elif size == 0:
            size = len(data) - at
        if size < header:
            return None
        if kind == b"moov":
            at += header  # its boxes follow
            continue
        if kind == b"mvhd":
            box = data[at + header : at + size]
            scale: int
            length: int
            if box[:1] == b"\x01" and len(box) >= 32:
                scale, length = struct.unpack(">IQ", box[20:32])
            elif len(box) >= 20:
                scale, length = struct.unpack(">II", box[12:20])
            else:
                return None
            if not scale or not length or length in (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
                return None
            return round(length * 1000 / scale)
        at += size
    return None


def audio_duration_ms(data: bytes, fmt: str) -> int | None:
    """How long the recording plays, read from its container; None if it does not say."""
    measure = {
        "mp3": mp3_duration_ms,
        "wav": wav_duration_ms,
        "ogg": ogg_duration_ms,
        "opus": ogg_duration_ms,
        "webm": webm_duration_ms,
        "m4a": m4a_duration_ms,
    }.get(fmt)
    return measure(data) if measure else None

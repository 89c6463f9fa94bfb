"""Audio container formats: how long a recording is, read from its own bytes.

WAV, Ogg (Opus, Vorbis) and MP4/M4A are read by mutagen. Two parsers stay ours, measured
by ``python -m bench.kept_libraries durations``:

- MP3: mutagen estimates a file without a Xing/VBRI header from its first frame's bitrate
  and the file size (and counts a cut-off last frame); walking the frames is exact for CBR
  and VBR alike, and what the replay's timing needs.
- WebM/Matroska (what browsers record): mutagen has no Matroska reader.
"""

from __future__ import annotations

import io
import math
import struct

import mutagen
from mutagen import FileType
from mutagen.mp4 import MP4
from mutagen.oggopus import OggOpus
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE

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


def audio_duration_ms(data: bytes, fmt: str) -> int | None:
    """How long the recording plays, read from its container; None if it does not say."""
    if fmt == "mp3":
        return mp3_duration_ms(data)
    if fmt == "webm":
        return webm_duration_ms(data)
    kinds = _MUTAGEN.get(fmt)
    return _mutagen_duration_ms(data, kinds) if kinds else None


_MUTAGEN: dict[str, list[type[FileType]]] = {
    "wav": [WAVE],
    "ogg": [OggOpus, OggVorbis],
    "opus": [OggOpus],
    "m4a": [MP4],
}


def _mutagen_duration_ms(data: bytes, kinds: list[type[FileType]]) -> int | None:
    try:
        audio = mutagen.File(io.BytesIO(data), options=kinds)
    except Exception:
        # The bytes are a client's upload: whatever mutagen trips over (it raises its own
        # errors, but also IndexError and struct.error on junk) means the container does not
        # say how long it is.
        return None
    length = getattr(getattr(audio, "info", None), "length", None)
    if not isinstance(length, int | float) or not math.isfinite(length) or length <= 0:
        return None  # e.g. a fragmented MP4 whose movie header leaves the duration 0
    return round(length * 1000)

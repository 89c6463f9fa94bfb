"""Audio container formats: how long a recording is, read from its own bytes."""

from __future__ import annotations

import math
import struct

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

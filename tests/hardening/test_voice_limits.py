"""Voice messages are bounded in bytes and in length: a long recording is refused by what
its container says before it is stored or sent to be transcribed, and by the transcriber's
own measure when the container does not say."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from tests.conftest import RunningServer, serve
from tests.fakes.fish import FakeFish
from tests.hardening.conftest import GENEROUS
from tests.support.settings import make_settings
from tomchat.domain import limits
from tomchat.domain.events import MessagePosted
from tomchat.media.containers import audio_duration_ms

pytestmark = pytest.mark.timeout(60)


def ogg_page(granule: int, payload: bytes, *, first: bool = False) -> bytes:
    lacing = bytes([255] * (len(payload) // 255) + [len(payload) % 255])
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, 2 if first else 0, granule, 7, 0, 0, len(lacing))
    return header + lacing + payload


def opus(seconds: float) -> bytes:
    head = b"OpusHead" + bytes([1, 1]) + struct.pack("<HIhB", 312, 48000, 0, 0)
    return (
        ogg_page(0, head, first=True)
        + ogg_page(0, b"OpusTags" + bytes(8))
        + ogg_page(round(seconds * 48000) + 312, bytes(60))
    )


def vorbis(seconds: float, rate: int = 44100) -> bytes:
    # Bitrates (3 x int32), block sizes (256/2048), then the framing bit the spec requires.
    head = b"\x01vorbis" + struct.pack("<IBI", 0, 1, rate) + bytes(12) + b"\xb8\x01"
    comments = b"\x03vorbis" + struct.pack("<II", 0, 0) + b"\x01"  # no vendor, no tags
    return (
        ogg_page(0, head, first=True)
        + ogg_page(0, comments)
        + ogg_page(round(seconds * rate), bytes(60))
    )


def ebml(element: int, body: bytes, *, unknown_size: bool = False) -> bytes:
    tag = element.to_bytes((element.bit_length() + 7) // 8, "big")
    if unknown_size:
        return tag + b"\x01\xff\xff\xff\xff\xff\xff\xff" + body
    return tag + (0x10000000 | len(body)).to_bytes(4, "big") + body


def webm(last_block_ms: int, *, duration_ms: float | None = None) -> bytes:
    """As MediaRecorder writes it: segment and cluster of unknown size, maybe no Duration."""
    info = ebml(0x2AD7B1, (1_000_000).to_bytes(3, "big"))
    if duration_ms is not None:
        info += ebml(0x4489, struct.pack(">d", duration_ms))
    cluster_at = last_block_ms - 700
    block = b"\x81" + struct.pack(">h", 700) + b"\x80" + bytes(20)
    cluster = ebml(0xE7, cluster_at.to_bytes(4, "big")) + ebml(0xA3, block)
    segment = ebml(0x1549A966, info) + ebml(0x1F43B675, cluster, unknown_size=True)
    return ebml(0x1A45DFA3, ebml(0x4282, b"webm")) + ebml(0x18538067, segment, unknown_size=True)


def m4a(seconds: float) -> bytes:
    mvhd = bytes(4) + struct.pack(">IIII", 0, 0, 600, round(seconds * 600)) + bytes(80)
    moov = (
        struct.pack(">I4s", 8 + 8 + len(mvhd), b"moov")
        + struct.pack(">I4s", 8 + len(mvhd), b"mvhd")
        + mvhd
    )
    return struct.pack(">I4s", 16, b"ftyp") + b"M4A \x00\x00\x00\x00" + moov


def wav(seconds: float) -> bytes:
    size = round(seconds * 16000)  # 8 kHz, 16 bit, mono
    return (
        b"RIFF"
        + struct.pack("<I", 36 + size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
        + b"data"
        + struct.pack("<I", size)
        + bytes(size)  # silence: WAV is measured by the samples really there
    )


@pytest.mark.parametrize(
    ("kind", "data", "expected_ms"),
    [
        ("ogg", opus(12.5), 12_500),
        ("ogg", opus(3600), 3_600_000),
        ("ogg", vorbis(95), 95_000),
        ("webm", webm(8_250), 8_250),
        ("webm", webm(300_000), 300_000),
        ("webm", webm(1_000, duration_ms=61_500.0), 61_500),
        ("m4a", m4a(42), 42_000),
        ("wav", wav(2), 2_000),
    ],
)
def test_container_lengths(kind: str, data: bytes, expected_ms: int) -> None:
    assert audio_duration_ms(data, kind) == expected_ms


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("ogg", b"OggS" + bytes(40)),
        ("ogg", b"OggS\x00\x02" + bytes(20) + b"\xff" + bytes(3)),
        ("webm", b"\x1a\x45\xdf\xa3"),
        ("webm", b"\x1a\x45\xdf\xa3\x00\x00"),
        ("webm", bytes(64)),
        ("m4a", b"\x00\x00\x00\x1cftypM4A " + bytes(40)),
        ("m4a", struct.pack(">I4s", 3, b"moov")),
        ("mp3", b""),
    ],
)
def test_junk_has_no_length_and_does_not_crash(kind: str, data: bytes) -> None:
    assert audio_duration_ms(data, kind) is None


@pytest.fixture
def fish() -> Iterator[FakeFish]:
    with FakeFish() as fake:
        yield fake


@pytest.fixture
async def voice_server(tmp_path: Path, fish: FakeFish) -> Any:
    env = {"TOMCHAT_ASR": "fish", "FISH_API_KEY": fish.api_key, "TOMCHAT_FISH_BASE_URL": fish.url}
    async with serve(make_settings(tmp_path, env=env, live_limits=GENEROUS)) as running:
        yield running


async def test_long_recordings_are_refused(voice_server: RunningServer, fish: FakeFish) -> None:
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(voice_server.url, transports=["websocket"], wait_timeout=10)
    assert (await sio.call("joinRoom", {"roomId": "v", "username": "ann"}, timeout=10))["ok"]

    async def send(audio: Any) -> Any:
        return await sio.call("sendVoiceMessage", {"roomId": "v", "audio": audio}, timeout=10)

    limit = limits.MAX_VOICE_SECONDS
    for long in (opus(limit + 1), webm(round(limit * 1000) + 500), m4a(limit * 10), wav(limit + 5)):
        refused = await send(long)
        assert refused["error"]["code"] == "too_large", refused
        assert f"{limit:.0f} s" in refused["error"]["message"]
    too_many_bytes = await send(b"OggS" + bytes(limits.MAX_VOICE_BYTES))
    assert too_many_bytes["error"]["code"] == "too_large"
    assert fish.asr_calls == [], "refused before anything was sent to be transcribed"

    # A container that does not tell its length: the transcriber's measure decides.
    fish.asr_answer = {"text": "a very long speech", "duration": limit + 30, "segments": []}
    silent_on_length = await send(b"\x1a\x45\xdf\xa3" + bytes(60))
    assert silent_on_length["error"]["code"] == "too_large"
    assert len(fish.asr_calls) == 1

    fish.asr_answer = {"text": "Hello Tom", "duration": 12.5, "segments": []}
    accepted = await send(opus(12.5))
    assert accepted["ok"] and accepted["content"] == "Hello Tom"
    posted = [
        e.event
        for e in await voice_server.services.store.read_stream("v")
        if isinstance(e.event, MessagePosted)
    ]
    assert [p.content for p in posted] == ["Hello Tom"]
    media = voice_server.settings.media_dir
    assert [f.name for f in media.iterdir()] == [posted[0].audio_url.rsplit("/", 1)[1]]  # type: ignore[union-attr]
    await sio.disconnect()

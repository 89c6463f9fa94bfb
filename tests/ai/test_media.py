"""The media store: names, growing files read while written, sniffing and durations."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest

from tests.fakes.fish import MP3_FRAME_MS, mp3_frame
from tomchat.media.containers import audio_duration_ms, mp3_duration_ms
from tomchat.media.files import MediaNotFound, MediaStore, sniff_audio

WAV = (
    b"RIFF"
    + struct.pack("<I", 36 + 8000)
    + b"WAVEfmt "
    + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
    + b"data"
    + struct.pack("<I", 8000)
    + bytes(8000)
)
SAMPLES = {
    "webm": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm" + bytes(40),
    "ogg": b"OggS\x00\x02" + bytes(40),
    "mp3": mp3_frame(0) * 3,
    "wav": WAV,
    "m4a": b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00" + bytes(40),
}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_sniff_by_magic_bytes(kind: str) -> None:
    assert sniff_audio(SAMPLES[kind]) == kind


def test_id3_tagged_mp3_and_non_audio() -> None:
    assert sniff_audio(b"ID3\x04\x00\x00\x00\x00\x00\x00" + mp3_frame(0)) == "mp3"
    for data in [b"", b"hello world", b"\x89PNG\r\n\x1a\n", b"%PDF-1.7", b"\xff\xf1\x50\x80"]:
        assert sniff_audio(data) is None, data


def test_names_are_unguessable_and_only_ours_resolve(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    names = {store.new_name("mp3") for _ in range(200)}
    assert len(names) == 200
    name = names.pop()
    assert len(name.split(".")[0]) >= 24
    assert store.name_of(store.url(name)) == name
    for bad in ["../secret.mp3", "a.mp3", "x" * 30 + ".exe", "..", "%2e%2e%2fetc.mp3"]:
        with pytest.raises(MediaNotFound):
            store.path(bad)
        assert store.name_of("/media/" + bad) is None


async def test_a_reader_follows_a_growing_file_to_its_end(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    writer = store.open_writer("mp3")
    assert store.is_growing(writer.name)
    parts = [mp3_frame(i) for i in range(20)]
    got = bytearray()
    first_seen = asyncio.Event()

    async def read() -> None:
        async for data in store.follow(writer.name, chunk_size=1000, poll=1.0):
            got.extend(data)
            first_seen.set()

    reader = asyncio.create_task(read())
    writer.write(parts[0])
    # The reader sees the first bytes before the file is finished (woken, not polled: poll=1s).
    await asyncio.wait_for(first_seen.wait(), 0.5)
    for part in parts[1:]:
        await asyncio.sleep(0.005)
        writer.write(part)
    assert not reader.done()
    writer.complete()
    await asyncio.wait_for(reader, 2)
    assert bytes(got) == b"".join(parts)
    assert not store.is_growing(writer.name)
    assert store.path(writer.name).read_bytes() == b"".join(parts)
    # A later reader of the finished file gets it all and stops.
    assert b"".join([d async for d in store.follow(writer.name)]) == b"".join(parts)


async def test_a_reader_in_another_process_is_served_by_polling(tmp_path: Path) -> None:
    writer_side, reader_side = MediaStore(tmp_path), MediaStore(tmp_path)
    writer = writer_side.open_writer("mp3")
    writer.write(b"\xff\xfb" + bytes(100))

    async def finish_later() -> None:
        await asyncio.sleep(0.1)
        writer.write(bytes(50))
        writer.complete()

    finishing = asyncio.create_task(finish_later())
    data = b"".join([d async for d in reader_side.follow(writer.name, poll=0.01)])
    await finishing
    assert len(data) == 152


async def test_an_abandoned_file_stops_its_readers(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    writer = store.open_writer("mp3")
    writer.write(b"partial")
    data = b"".join([d async for d in store.follow(writer.name, poll=0.01, idle_timeout=0.1)])
    assert data == b"partial"
    writer.discard()
    assert not store.exists(writer.name)
    assert not store.is_growing(writer.name)


async def test_save_writes_a_new_file(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    name = await store.save(SAMPLES["ogg"], "ogg")
    assert name.endswith(".ogg")
    assert store.path(name).read_bytes() == SAMPLES["ogg"]
    assert store.content_type(name) == "audio/ogg"


def test_durations() -> None:
    frames = b"".join(mp3_frame(i) for i in range(100))
    assert mp3_duration_ms(frames) == round(100 * MP3_FRAME_MS)
    # ID3 tag skipped; a cut-off last frame does not count.
    tagged = b"ID3\x04\x00\x00\x00\x00\x00\x05" + b"TAGGY" + frames + mp3_frame(100)[:50]
    assert audio_duration_ms(tagged, "mp3") == round(100 * MP3_FRAME_MS)
    assert audio_duration_ms(WAV, "wav") == 500
    assert mp3_duration_ms(b"not audio") is None
    assert audio_duration_ms(SAMPLES["ogg"], "ogg") is None

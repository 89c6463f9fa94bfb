"""Tom's voice: each reply spoken while its text is still streaming.

The conversation hands every piece of text to a :class:`ReplySpeaker` the moment the model
produces it. The speaker feeds the ``Speech`` provider and writes the audio to the media
store as it arrives; once the first bytes are on disk it appends a ``reply.audio`` event
(``aiAudio`` in the room) so browsers start playing the growing file at once. When the
speech ends, a second ``reply.audio`` records the final size and duration.

Speech never decides the fate of the text: a failure is logged and the audio marked missing
(``reply.audio`` with no URL) or cut short (the audio so far kept), with the provider's words
in the event's ``error``, while the reply itself completes as it would have anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from tomchat import metrics
from tomchat.ai.protocols import Speech, SpeechError
from tomchat.domain.events import Event, ReplyAudio
from tomchat.media.containers import audio_duration_ms
from tomchat.media.files import MediaStore, MediaWriter

log = logging.getLogger(__name__)

Append = Callable[[str, list[Event]], Awaitable[object]]


class Voice:
    """Owns the speech provider, the media store and the speakers still at work."""

    def __init__(
        self, speech: Speech, media: MediaStore, append: Append, voice: str | None = None
    ) -> None:
        self.speech = speech
        self.media = media
        self.voice = voice
        self._append = append
        self._speakers: set[ReplySpeaker] = set()

    def start(self, room_id: str, message_id: str, voice: str | None = None) -> ReplySpeaker:
        """Begin speaking a reply (in ``voice``, the replying character's, else the server's
        default); the connection to the provider opens now, before any text, so its set-up
        overlaps the model's first tokens."""
        speaker = ReplySpeaker(self, room_id, message_id, voice)
        self._speakers.add(speaker)
        speaker.task.add_done_callback(lambda _: self._speakers.discard(speaker))
        return speaker

    async def aclose(self) -> None:
        """Stop every speaker (keeping what is on disk), then close the provider."""
        speakers = list(self._speakers)
        for speaker in speakers:
            speaker.abort()
        if speakers:
            await asyncio.wait([s.task for s in speakers], timeout=10)
        await self.speech.aclose()


class ReplySpeaker:
    def __init__(
        self, voice: Voice, room_id: str, message_id: str, voice_id: str | None = None
    ) -> None:
        self._voice = voice
        self.voice_id = voice_id or voice.voice
        self.room_id = room_id
        self.message_id = message_id
        self._text: asyncio.Queue[str | None] = asyncio.Queue()
        self._aborted = False
        self._writer: MediaWriter | None = None
        self.first_text_at: float | None = None
        self.first_audio_at: float | None = None
        self.task = asyncio.create_task(self._run(), name=f"voice:{message_id}")

    def say(self, text: str) -> None:
        if text:
            if self.first_text_at is None:
                self.first_text_at = time.perf_counter()
            self._text.put_nowait(text)

    def finish(self) -> None:
        """No more text: speak what is left, then finalise."""
        self._text.put_nowait(None)

    def abort(self) -> None:
        """Stop speaking now (the reply was stopped); the audio so far stays playable."""
        if not self.task.done():
            self._aborted = True
            self.task.cancel()

    async def wait(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self.task)

    async def _pieces(self) -> AsyncIterator[str]:
        while (text := await self._text.get()) is not None:
            yield text

    async def _run(self) -> None:
        voice = self._voice
        fmt = voice.speech.format
        try:
            audio = voice.speech.speak(self._pieces(), self.voice_id)
            try:
                async for data in audio:
                    await self._write(data, fmt)
            finally:
                # Close the provider's stream now (its connection), not whenever GC runs.
                close = getattr(audio, "aclose", None)
                if close is not None:
                    await close()
        except asyncio.CancelledError:
            if not self._aborted:
                await self._finalise(fmt)
                raise
            # Our own stop: what was spoken so far is kept as the reply's audio.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            await self._finalise(fmt)
            return
        except SpeechError as error:
            log.warning("speech for reply %s failed: %s", self.message_id, error)
            if self._writer is not None and self._writer.bytes_written:
                # Fish ended the session early: what it had said is still the reply's audio.
                await self._finalise(fmt, str(error))
            else:
                await self._missing(fmt, str(error))
            return
        except Exception as error:
            log.exception("speech for reply %s crashed", self.message_id)
            await self._missing(fmt, f"speech failed ({type(error).__name__})")
            return
        await self._finalise(fmt)

    async def _write(self, data: bytes, fmt: str) -> None:
        if self._writer is None:
            self._writer = self._voice.media.open_writer(fmt)
            self._writer.write(data)
            self.first_audio_at = time.perf_counter()
            if self.first_text_at is not None:
                metrics.TTS_FIRST_AUDIO.observe(self.first_audio_at - self.first_text_at)
            await self._event(
                ReplyAudio(
                    message_id=self.message_id,
                    audio_url=self._writer.url,
                    format=fmt,
                    bytes=len(data),
                )
            )
        else:
            self._writer.write(data)

    async def _finalise(self, fmt: str, error: str | None = None) -> None:
        writer = self._writer
        if writer is None or writer.closed:
            return  # nothing was ever said: no audio, and nothing to announce
        writer.complete()
        data = await asyncio.to_thread(writer.path.read_bytes)
        await self._event(
            ReplyAudio(
                message_id=self.message_id,
                audio_url=writer.url,
                format=fmt,
                bytes=writer.bytes_written,
                duration_ms=audio_duration_ms(data, fmt),
                error=error,
            )
        )

    async def _missing(self, fmt: str, error: str) -> None:
        if self._writer is not None:
            self._writer.discard()
        await self._event(
            ReplyAudio(message_id=self.message_id, audio_url=None, format=fmt, bytes=0, error=error)
        )

    async def _event(self, event: ReplyAudio) -> None:
        try:
            await self._voice._append(self.room_id, [event])
        except Exception:
            log.exception("recording the audio of reply %s failed", self.message_id)

"""``sendVoiceMessage``: a recording in, a transcribed user message out.

The audio is judged by its own bytes, not by the type the client claims: browsers disagree
about what they record (Chrome webm/opus, Safari mp4, Firefox ogg) and a label costs nothing
to fake. The recording is kept beside the message so the room can play it back.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from typing import Any

from tomchat.ai.protocols import Transcriber, TranscriberError
from tomchat.chat.conversation import Conversation
from tomchat.domain import limits
from tomchat.domain.events import MessagePosted
from tomchat.media.containers import audio_duration_ms
from tomchat.media.files import AUDIO_TYPES, MediaStore, sniff_audio
from tomchat.wire.incoming import PayloadError, SendVoiceMessage, parse
from tomchat.wire.payloads import VoiceAck

log = logging.getLogger(__name__)

MAX_VOICE_BYTES = limits.MAX_VOICE_BYTES
MAX_VOICE_MS = round(limits.MAX_VOICE_SECONDS * 1000)
# base64 of the largest recording, plus room for a "data:audio/...;base64," prefix
_MAX_BASE64_CHARS = (MAX_VOICE_BYTES + 2) // 3 * 4 + 256


class VoiceMessages:
    def __init__(
        self,
        conversation: Conversation,
        media: MediaStore,
        transcriber: Transcriber | None,
    ) -> None:
        self.conversation = conversation
        self.media = media
        self.transcriber = transcriber

    async def handle(self, member: Callable[[str], str], data: Any) -> VoiceAck:
        """``member(room_id)`` names the sender, or raises if they are not in the room."""
        p = parse(SendVoiceMessage, data)
        username = member(p.roomId)
        if self.transcriber is None:
            raise PayloadError("unavailable", "this server does not take voice messages")
        audio = _audio_bytes(p.audio)
        kind = sniff_audio(audio)
        if kind is None:
            raise PayloadError(
                "bad_request", "the recording is not audio we can read (webm, ogg, mp3, wav, m4a)"
            )
        if p.mimeType and p.mimeType.split(";")[0].strip() != AUDIO_TYPES[kind]:
            log.debug("voice message labelled %s is %s", p.mimeType, kind)
        # Long recordings are refused before they cost storage and a transcription; what the
        # container does not tell, the transcriber's own measure catches below.
        _check_length(audio_duration_ms(audio, kind))
        name = await self.media.save(audio, kind)
        try:
            heard = await self.transcriber.transcribe(audio, AUDIO_TYPES[kind])
        except TranscriberError as exc:
            self.media.delete(name)
            log.warning("transcribing a voice message failed: %s", exc)
            raise PayloadError(
                "unavailable", f"the recording could not be transcribed: {exc}"
            ) from None
        except BaseException:
            self.media.delete(name)
            raise
        try:
            _check_length(heard.duration_ms)
        except PayloadError:
            self.media.delete(name)
            raise
        text = heard.text.strip()
        if not text:
            self.media.delete(name)
            raise PayloadError("bad_request", "no speech was recognised in the recording")
        if len(text) > limits.MAX_CONTENT_CHARS:
            text = text[: limits.MAX_CONTENT_CHARS - 1] + "\u2026"
        url = self.media.url(name)
        recorded = await self.conversation.post_message(
            p.roomId, username, text, client_id=p.clientId, source="voice", audio_url=url
        )
        event = recorded.event
        assert isinstance(event, MessagePosted)
        if event.audio_url != url:
            self.media.delete(name)  # a retried clientId: the first recording stands
        return VoiceAck(
            ok=True,
            message_id=event.message_id,
            version=recorded.version,
            content=event.content,
            audio_url=event.audio_url,
        )


def _check_length(duration_ms: int | None) -> None:
    if duration_ms is not None and duration_ms > MAX_VOICE_MS:
        raise PayloadError(
            "too_large",
            f"the recording is {duration_ms / 1000:.0f} s long; "
            f"the limit is {limits.MAX_VOICE_SECONDS:.0f} s",
        )


def _audio_bytes(audio: Any) -> bytes:
    if isinstance(audio, bytes | bytearray | memoryview):
        data = bytes(audio)
    elif isinstance(audio, str):
        if len(audio) > _MAX_BASE64_CHARS:
            raise PayloadError("too_large", f"the recording is over {MAX_VOICE_BYTES} bytes")
        text = audio.partition(",")[2] if audio.startswith("data:") else audio
        try:
            data = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise PayloadError("bad_request", "audio is neither bytes nor valid base64") from None
    else:
        raise PayloadError("bad_request", "audio must be bytes or a base64 string")
    if len(data) > MAX_VOICE_BYTES:
        raise PayloadError("too_large", f"the recording is over {MAX_VOICE_BYTES} bytes")
    if not data:
        raise PayloadError("bad_request", "the recording is empty")
    return data

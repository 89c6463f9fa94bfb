"""``GET /api/features``: what this server can do, so clients show only what works."""

from __future__ import annotations

import msgspec
from litestar import get
from litestar.di import NamedDependency

from tomchat.services import Services


class Features(msgspec.Struct):
    """Capabilities, never setting names: clients turn these into what people see."""

    tts: bool  # replies are spoken (Tom's voice, the mute switch)
    asr: bool  # voice messages are transcribed (the microphone)
    llm: str  # which kind of model answers: "demo" is the canned offline one
    characters: bool  # a character library (``/api/characters``)
    trustedIdentity: bool  # names come from a trusted proxy; the client cannot choose one


@get("/api/features", tags=["health"], summary="What this server can do")
async def features(services: NamedDependency[Services]) -> Features:
    svc = services
    settings = svc.settings
    return Features(
        tts=svc.voice is not None,
        asr=svc.transcriber is not None,
        llm=settings.llm,
        # Set by the parts of the server that add them; absent here means off.
        characters=bool(getattr(settings, "characters", False)),
        trustedIdentity=bool(getattr(settings, "trusted_user_header", None)),
    )

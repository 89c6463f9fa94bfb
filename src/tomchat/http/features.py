"""``GET /api/features``: what this server can do, so clients show only what works."""

from __future__ import annotations

import msgspec
from litestar import get
from litestar.di import NamedDependency


class Features(msgspec.Struct):
    """Capabilities, never setting names: clients turn these into what people see."""

    tts: bool  # replies are spoken (Tom's voice, the mute switch)
    asr: bool  # voice messages are transcribed (the microphone)
    llm: str  # which kind of model answers: "demo" is the canned offline one
    characters: bool  # a character library (``/api/characters``)
    trustedIdentity: bool  # names come from a trusted proxy; the client cannot choose one


@get("/api/features", tags=["health"], summary="What this server can do")
async def features(capabilities: NamedDependency[Features]) -> Features:
    # Worked out once by the wiring (``app.py``), which knows what it switched on.
    return capabilities

"""Which provider answers, speaks and listens, chosen by configuration (DESIGN §5).

Each kind has one registry: a name maps to a factory taking the settings. Adding a provider
is one entry here; nothing else in the server branches on provider names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from tomchat.ai.demo import DemoChatModel
from tomchat.ai.protocols import ChatModel, Speech, Transcriber
from tomchat.settings import ConfigError, Settings

ChatModelFactory = Callable[[Settings], ChatModel]
SpeechFactory = Callable[[Settings], Speech | None]
TranscriberFactory = Callable[[Settings], Transcriber | None]
T = TypeVar("T")


def _demo(settings: Settings) -> ChatModel:
    return DemoChatModel(settings.demo_delay_ms)


CHAT_MODELS: Mapping[str, ChatModelFactory] = {
    "demo": _demo,
}

SPEECH: Mapping[str, SpeechFactory] = {
    "none": lambda _settings: None,
}

TRANSCRIBERS: Mapping[str, TranscriberFactory] = {
    "none": lambda _settings: None,
}


def _choose(
    registry: Mapping[str, Callable[[Settings], T]], variable: str, name: str
) -> Callable[[Settings], T]:
    try:
        return registry[name]
    except KeyError:
        choices = " | ".join(registry)
        raise ConfigError(
            f"{variable}={name!r} is not a known provider (choose {choices})"
        ) from None


def build_chat_model(settings: Settings) -> ChatModel:
    return _choose(CHAT_MODELS, "TOMCHAT_LLM", settings.llm)(settings)


def build_speech(settings: Settings) -> Speech | None:
    return _choose(SPEECH, "TOMCHAT_TTS", settings.tts)(settings)


def build_transcriber(settings: Settings) -> Transcriber | None:
    return _choose(TRANSCRIBERS, "TOMCHAT_ASR", settings.asr)(settings)

"""Which provider answers, speaks and listens, chosen by configuration (``TOMCHAT_LLM``,
``TOMCHAT_TTS``, ``TOMCHAT_ASR``).

Each kind has one registry: a name maps to a factory taking the settings. Adding a provider
is one entry here; nothing else in the server branches on provider names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from tomchat.ai.demo import DemoChatModel
from tomchat.ai.openai_compat import JanitorChatModel, OpenAIChatModel
from tomchat.ai.protocols import ChatModel, Speech, Transcriber
from tomchat.domain.errors import ConfigError
from tomchat.settings import Settings

ChatModelFactory = Callable[[Settings], ChatModel]
SpeechFactory = Callable[[Settings], Speech | None]
TranscriberFactory = Callable[[Settings], Transcriber | None]
T = TypeVar("T")


def _demo(settings: Settings) -> ChatModel:
    return DemoChatModel(settings.demo_delay_ms)


def _needs_key(variable: str, value: str | None, why: str) -> str:
    if not value:
        raise ConfigError(f"{variable} must be set {why}")
    return value


def _openai(settings: Settings) -> ChatModel:
    if not settings.llm_base_url:
        # Only the hosted default needs a key; local servers (vLLM, llama.cpp, Ollama) do not.
        _needs_key("TOMCHAT_LLM_API_KEY", settings.llm_api_key, "to use the OpenAI API")
    return OpenAIChatModel(
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key,
        model=settings.llm_model,
        max_tokens=settings.llm_max_tokens,
    )


def _janitor(settings: Settings) -> ChatModel:
    if not settings.llm_base_url:
        _needs_key("TOMCHAT_LLM_API_KEY", settings.llm_api_key, "to use JanitorAI")
    return JanitorChatModel(
        url=settings.llm_base_url,
        api_key=settings.llm_api_key,
        model=settings.llm_model,
        max_tokens=settings.llm_max_tokens,
    )


def _fish_key(settings: Settings, variable: str) -> str:
    return _needs_key("FISH_API_KEY", settings.fish_api_key, f"when {variable}=fish")


def _fish_speech(settings: Settings) -> Speech:
    # Imported only when Fish is on: a missing or too old fish-audio-sdk must not stop a
    # server that only writes text.
    from tomchat.ai.fish import FishSpeech

    return FishSpeech(
        api_key=_fish_key(settings, "TOMCHAT_TTS"),
        base_url=settings.fish_base_url,
        voice=settings.fish_voice,
        model=settings.fish_model,
        latency=settings.fish_latency,
    )


def _fish_transcriber(settings: Settings) -> Transcriber:
    from tomchat.ai.fish import FishTranscriber

    return FishTranscriber(
        api_key=_fish_key(settings, "TOMCHAT_ASR"), base_url=settings.fish_base_url
    )


CHAT_MODELS: Mapping[str, ChatModelFactory] = {
    "demo": _demo,
    "openai": _openai,
    "janitor": _janitor,
}

SPEECH: Mapping[str, SpeechFactory] = {
    "none": lambda _settings: None,
    "fish": _fish_speech,
}

TRANSCRIBERS: Mapping[str, TranscriberFactory] = {
    "none": lambda _settings: None,
    "fish": _fish_transcriber,
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

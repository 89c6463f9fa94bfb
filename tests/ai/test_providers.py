"""Providers are chosen by configuration; bad configuration is refused with the reason."""

from __future__ import annotations

import pytest

from tomchat.ai.demo import DemoChatModel
from tomchat.ai.fish import FishSpeech, FishTranscriber
from tomchat.ai.openai_compat import JANITOR_DEFAULT_URL, JanitorChatModel, OpenAIChatModel
from tomchat.providers import build_chat_model, build_speech, build_transcriber
from tomchat.settings import ConfigError, Settings


def settings(**env: str) -> Settings:
    return Settings.from_env(env)


async def test_defaults_are_demo_and_no_voice() -> None:
    s = settings()
    model = build_chat_model(s)
    assert isinstance(model, DemoChatModel)
    assert build_speech(s) is None
    assert build_transcriber(s) is None


async def test_openai_with_a_local_server_needs_no_key() -> None:
    model = build_chat_model(
        settings(
            TOMCHAT_LLM="openai",
            TOMCHAT_LLM_BASE_URL="http://127.0.0.1:11434/v1",
            TOMCHAT_LLM_MODEL="llama3.2",
        )
    )
    assert isinstance(model, OpenAIChatModel)
    assert model.url == "http://127.0.0.1:11434/v1/chat/completions"
    assert model.model == "llama3.2"
    await model.aclose()


async def test_janitor_defaults_to_the_hosted_url() -> None:
    model = build_chat_model(settings(TOMCHAT_LLM="janitor", TOMCHAT_LLM_API_KEY="k"))
    assert isinstance(model, JanitorChatModel)
    assert model.url == JANITOR_DEFAULT_URL
    await model.aclose()


async def test_fish_voice_and_ears() -> None:
    s = settings(
        TOMCHAT_TTS="fish",
        TOMCHAT_ASR="fish",
        FISH_API_KEY="fk",
        TOMCHAT_FISH_VOICE="v",
        TOMCHAT_FISH_MODEL="s1",
    )
    tts, asr = build_speech(s), build_transcriber(s)
    assert isinstance(tts, FishSpeech)
    assert (tts.voice, tts.model, tts.format) == ("v", "s1", "mp3")
    assert isinstance(asr, FishTranscriber)
    await tts.aclose()
    await asr.aclose()


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"TOMCHAT_LLM": "gpt"}, "TOMCHAT_LLM='gpt' is not a known provider (choose demo"),
        ({"TOMCHAT_LLM": "openai"}, "TOMCHAT_LLM_API_KEY must be set to use the OpenAI API"),
        ({"TOMCHAT_LLM": "janitor"}, "TOMCHAT_LLM_API_KEY must be set to use JanitorAI"),
        ({"TOMCHAT_TTS": "fish"}, "FISH_API_KEY must be set when TOMCHAT_TTS=fish"),
        ({"TOMCHAT_ASR": "fish"}, "FISH_API_KEY must be set when TOMCHAT_ASR=fish"),
        ({"TOMCHAT_TTS": "elevenlabs"}, "TOMCHAT_TTS='elevenlabs' is not a known provider"),
    ],
)
def test_bad_configuration_is_refused(env: dict[str, str], reason: str) -> None:
    s = settings(**env)

    def build_all() -> None:
        build_chat_model(s)
        build_speech(s)
        build_transcriber(s)

    with pytest.raises(ConfigError) as caught:
        build_all()
    assert reason in str(caught.value)

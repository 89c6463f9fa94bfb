"""Providers are chosen by configuration; bad configuration is refused with the reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_a_server_without_a_usable_fish_sdk_still_serves_text(tmp_path: Path) -> None:
    """fish-audio-sdk 1.0.0 lacks WebSocketOptions: with TTS and ASR off it must not matter."""
    script = (
        "import sys, fishaudio\n"
        "del fishaudio.WebSocketOptions\n"  # what 1.0.0 looks like
        "from tomchat.app import create_app\n"
        "from tomchat.providers import build_chat_model, build_speech, build_transcriber\n"
        "from tomchat.settings import Settings\n"
        f"s = Settings.from_env({{}}, database_url='sqlite+aiosqlite:///{tmp_path}/t.db')\n"
        "create_app(s)\n"
        "print(type(build_chat_model(s)).__name__, build_speech(s), build_transcriber(s))\n"
        "assert 'tomchat.ai.fish' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "DemoChatModel None None"

"""Character cards: tomchat's own JSON, Character Card V2 (JSON and PNG), and bad cards."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from tomchat.ai.characters import ROOM_USER, load_character
from tomchat.domain.character import TOM
from tomchat.settings import ConfigError

V2: dict[str, Any] = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        "name": "Captain Mira",
        "description": "{{char}} commands the airship Kestrel and teases {{user}} kindly.",
        "personality": "bold, dry humour",
        "scenario": "The crew gathers on deck at dusk.",
        "first_mes": "Welcome aboard, {{user}}! I'm {{char}}.",
        "mes_example": "<START>\n{{user}}: Where to?\n{{char}}: Wherever the wind owes us.",
        "system_prompt": "",
        "creator_notes": "not for the model",
        "tags": ["pirate"],
        "extensions": {"tomchat": {"voice": "mira-voice-id"}},
    },
}


def write(tmp_path: Path, content: bytes | str | dict[str, Any], name: str = "card.json") -> Path:
    path = tmp_path / name
    if isinstance(content, dict):
        content = json.dumps(content)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def png_with(chunks: list[tuple[bytes, bytes]]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    for kind, body in chunks:
        out += chunk(kind, body)
    return out + chunk(b"IDAT", zlib.compress(b"\0\0")) + chunk(b"IEND", b"")


def test_no_card_is_tom() -> None:
    assert load_character(None) is TOM


def test_tomchat_card(tmp_path: Path) -> None:
    card = {
        "name": "Ada",
        "system_prompt": "You are Ada, a patient maths tutor.",
        "greeting": "Hi all, Ada here.",
        "voice": "ada-voice",
    }
    ada = load_character(write(tmp_path, card))
    assert (ada.name, ada.system_prompt, ada.greeting, ada.voice) == (
        "Ada",
        "You are Ada, a patient maths tutor.",
        "Hi all, Ada here.",
        "ada-voice",
    )


def test_character_card_v2(tmp_path: Path) -> None:
    mira = load_character(write(tmp_path, V2))
    assert mira.name == "Captain Mira"
    assert mira.greeting == f"Welcome aboard, {ROOM_USER}! I'm Captain Mira."
    assert mira.voice == "mira-voice-id"
    prompt = mira.system_prompt
    assert prompt.startswith("You are Captain Mira, chatting with a group of people")
    assert f"Captain Mira commands the airship Kestrel and teases {ROOM_USER} kindly." in prompt
    assert "Captain Mira's personality: bold, dry humour" in prompt
    assert "Scenario: The crew gathers on deck at dusk." in prompt
    assert "not for the model" not in prompt
    assert "{{" not in prompt
    assert mira.example_dialogue == (
        f"<START>\n{ROOM_USER}: Where to?\nCaptain Mira: Wherever the wind owes us."
    )


def test_v2_system_prompt_replaces_ours_and_keeps_original_placeholder(tmp_path: Path) -> None:
    card = json.loads(json.dumps(V2))
    card["data"]["system_prompt"] = "Pirate rules apply. {{original}}"
    mira = load_character(write(tmp_path, card))
    assert mira.system_prompt.startswith("Pirate rules apply. You are Captain Mira, chatting")


def test_v2_card_inside_a_png(tmp_path: Path) -> None:
    encoded = base64.b64encode(json.dumps(V2).encode())
    path = write(tmp_path, png_with([(b"tEXt", b"chara\0" + encoded)]), "mira.png")
    assert load_character(path).name == "Captain Mira"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not valid JSON: Expecting property name"),
        ("[1, 2]", "must be a JSON object"),
        ({"name": "Ada", "greeting": "hi"}, "system_prompt is missing"),
        ({"name": "", "system_prompt": "x", "greeting": "hi"}, "name must be a non-empty"),
        ({"name": "Ada", "system_prompt": 3, "greeting": "hi"}, "system_prompt must be a string"),
        ({"name": "Ada", "system_prompt": "x", "greeting": "hi", "first_mes": "x"}, "first_mes"),
        ({"spec": "chara_card_v9", "data": {}}, "unsupported card spec 'chara_card_v9'"),
        ({"spec": "chara_card_v2"}, "needs a 'data' object"),
        ({"spec": "chara_card_v2", "data": {"name": "M", "first_mes": ""}}, "first_mes"),
        (png_with([]), "no embedded character card"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
    ],
)
def test_bad_cards_are_refused_with_the_reason(
    tmp_path: Path, content: bytes | str | dict[str, Any], reason: str
) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ConfigError) as caught:
        load_character(path)
    assert reason in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_card_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_character(tmp_path / "nope.json")

"""Character cards: tomchat's own small JSON and the widely shared Character Card V2.

A card is read once at start-up; anything wrong with it stops the server with the reason,
rather than letting a half-read character talk to a room.

tomchat's own card::

    {"name": "Ada", "system_prompt": "...", "greeting": "...", "voice": "<fish voice id>",
     "example_dialogue": "..."}

Character Card V2 (``spec: chara_card_v2``; V3 cards carry the same fields and are read the
same way), as JSON or embedded in a PNG's ``chara`` text chunk: ``data.name``,
``description``, ``personality``, ``scenario``, ``first_mes``, ``mes_example`` and
``system_prompt`` are used; a Fish voice id may sit in ``data.extensions.tomchat.voice``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from tomchat.domain.character import TOM, Character
from tomchat.domain.errors import ConfigError, TomchatError

MAX_CARD_BYTES = 8 * 1024 * 1024
MAX_NAME_CHARS = 64
MAX_TEXT_CHARS = 100_000
_V2_SPECS = {"chara_card_v2", "chara_card_v3"}
# A room has many people; a card written for one user addresses them all.
ROOM_USER = "everyone"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_AVATAR_BYTES = 2 * 1024 * 1024
# The pictures browsers show everywhere, by Pillow's name for their format.
AVATAR_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


def load_character(path: Path | str | None) -> Character:
    """The character of ``TOMCHAT_CHARACTER``, or the built-in Tom when unset."""
    if path is None or str(path) == "":
        return TOM
    path = Path(path)
    where = f"TOMCHAT_CHARACTER={path}"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a folder, not a card") from None
    except OSError as error:
        raise ConfigError(f"{where}: cannot be read ({error.strerror})") from None
    try:
        return parse_card(raw)
    except CardError as error:
        raise ConfigError(f"{where}: {error}") from None


class CardError(TomchatError, ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Upload:
    """A card as uploaded: the character, and its picture when the card was a PNG."""

    character: Character
    avatar: bytes | None = None
    avatar_type: str | None = None


def check_avatar(data: bytes, what: str = "the avatar") -> str:
    """The content type of a picture fit to be an avatar; CardError says why it is not."""
    if len(data) > MAX_AVATAR_BYTES:
        raise CardError(f"{what} is larger than 2 MiB ({len(data)} bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format
            image.verify()  # reads the whole file: a truncated or damaged one fails here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise CardError(f"{what} is not an image Pillow can read ({error})") from None
    if kind not in AVATAR_TYPES:
        raise CardError(f"{what} is a {kind} image; use PNG, JPEG, WebP or GIF")
    return AVATAR_TYPES[kind]


def parse_upload(raw: bytes) -> Upload:
    """A card uploaded to the library: JSON, or a PNG whose picture becomes the avatar."""
    if raw.startswith(_PNG_SIGNATURE):
        character = parse_card(raw)  # no card in it: say so before judging the picture
        return Upload(character, raw, check_avatar(raw, "the card's picture"))
    if _looks_like_image(raw):
        raise CardError(
            "this image is not a character card: upload a PNG with the card in its "
            "'chara' or 'ccv3' text chunk, or the card's JSON"
        )
    return Upload(parse_card(raw))


def _looks_like_image(raw: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(raw)):
            return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False


def parse_card(raw: bytes) -> Character:
    if len(raw) > MAX_CARD_BYTES:
        raise CardError(f"the card is larger than {MAX_CARD_BYTES // (1024 * 1024)} MB")
    if raw.startswith(_PNG_SIGNATURE):
        raw = _png_card(raw)
    try:
        card = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise CardError("not UTF-8 text (a JSON card or a PNG with an embedded card)") from None
    except json.JSONDecodeError as error:
        raise CardError(
            f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    if not isinstance(card, dict):
        raise CardError("the card must be a JSON object")
    spec = card.get("spec")
    if spec in _V2_SPECS:
        return _from_v2(card)
    if spec is not None:
        raise CardError(f"unsupported card spec {spec!r} (expected chara_card_v2 or v3)")
    return _from_tomchat(card)


def _from_tomchat(card: dict[str, Any]) -> Character:
    known = {"name", "system_prompt", "greeting", "voice", "example_dialogue", "description", "id"}
    unknown = sorted(set(card) - known)
    if unknown:
        # Most often a V2 card without its "spec", or a typo: say which.
        raise CardError(
            f"unknown field(s) {', '.join(unknown)}; a tomchat card has "
            f"{', '.join(sorted(known))} (or give a Character Card V2 with spec: chara_card_v2)"
        )
    name = _name(card.get("name"), "name")
    character_id = card.get("id")
    if character_id is not None and (
        not isinstance(character_id, str)
        or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,47}", character_id)
    ):
        raise CardError("id must be 1-48 of a-z 0-9 - (starting with a letter or digit)")
    return Character(
        id=character_id or "",
        name=name,
        system_prompt=_text(card, "system_prompt", required=True),
        greeting=_text(card, "greeting", required=True),
        voice=_voice(card.get("voice"), "voice"),
        example_dialogue=_text(card, "example_dialogue"),
        description=_text(card, "description"),
    )


def _from_v2(card: dict[str, Any]) -> Character:
    data = card.get("data")
    if not isinstance(data, dict):
        raise CardError("a chara_card_v2 card needs a 'data' object")
    name = _name(data.get("name"), "data.name")

    def field(key: str) -> str:
        return _fill(_text(data, key, prefix="data."), name)

    description = field("description")
    personality = field("personality")
    scenario = field("scenario")
    greeting = field("first_mes")
    if not greeting:
        raise CardError("data.first_mes (the greeting) is empty")
    base = (
        f"You are {name}, chatting with a group of people in a shared room. Stay in character. "
        "Messages arrive as 'username: text'; address people by name. Keep every answer to a "
        "few sentences so it can be spoken aloud."
    )
    # V2: a card's system_prompt replaces the app's own; {{original}} stands for the app's.
    override = _text(data, "system_prompt", prefix="data.")
    head = _fill(override.replace("{{original}}", base), name) if override.strip() else base
    parts = [head]
    if description:
        parts.append(description)
    if personality:
        parts.append(f"{name}'s personality: {personality}")
    if scenario:
        parts.append(f"Scenario: {scenario}")
    extensions = data.get("extensions")
    tomchat = extensions.get("tomchat") if isinstance(extensions, dict) else None
    voice = (
        _voice(tomchat.get("voice"), "data.extensions.tomchat.voice")
        if isinstance(tomchat, dict)
        else None
    )
    return Character(
        name=name,
        system_prompt="\n\n".join(parts),
        greeting=greeting,
        voice=voice,
        example_dialogue=field("mes_example"),
        description=description,
    )


def _fill(text: str, name: str) -> str:
    for placeholder in ("{{char}}", "{{Char}}", "<BOT>", "<bot>"):
        text = text.replace(placeholder, name)
    for placeholder in ("{{user}}", "{{User}}", "<USER>", "<user>"):
        text = text.replace(placeholder, ROOM_USER)
    return text.strip()


def _name(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CardError(f"{key} must be a non-empty string")
    name = value.strip()
    if len(name) > MAX_NAME_CHARS:
        raise CardError(f"{key} is longer than {MAX_NAME_CHARS} characters")
    return name


def _text(card: dict[str, Any], key: str, *, required: bool = False, prefix: str = "") -> str:
    value = card.get(key)
    if value is None:
        if required:
            raise CardError(f"{prefix}{key} is missing")
        return ""
    if not isinstance(value, str):
        raise CardError(f"{prefix}{key} must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise CardError(f"{prefix}{key} is empty")
    if len(value) > MAX_TEXT_CHARS:
        raise CardError(f"{prefix}{key} is longer than {MAX_TEXT_CHARS} characters")
    return value.strip()


def _voice(value: Any, key: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise CardError(f"{key} must be a Fish Audio voice id (a short string)")
    return value.strip()


def _png_card(raw: bytes) -> bytes:
    """The JSON inside a PNG card's ``chara`` (or V3 ``ccv3``) text chunk."""
    found: dict[str, bytes] = {}
    offset = len(_PNG_SIGNATURE)
    while offset + 8 <= len(raw):
        (length,) = struct.unpack(">I", raw[offset : offset + 4])
        kind = raw[offset + 4 : offset + 8]
        body = raw[offset + 8 : offset + 8 + length]
        if len(body) < length:
            raise CardError("the PNG is truncated")
        offset += 12 + length
        if kind == b"tEXt":
            keyword, _, text = body.partition(b"\0")
            found[keyword.decode("latin-1")] = text
        elif kind == b"zTXt":
            keyword, _, rest = body.partition(b"\0")
            try:
                found[keyword.decode("latin-1")] = zlib.decompress(rest[1:])
            except zlib.error:
                raise CardError("a compressed text chunk in the PNG is damaged") from None
        elif kind == b"IEND":
            break
    embedded = found.get("ccv3") or found.get("chara")
    if embedded is None:
        raise CardError("the PNG has no embedded character card (no 'chara' text chunk)")
    try:
        return base64.b64decode(embedded, validate=True)
    except (binascii.Error, ValueError):
        raise CardError("the PNG's card is not valid base64") from None

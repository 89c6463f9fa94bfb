"""Who the AI is: the parts of a character card the conversation needs."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_SLUG_CHARS = 48
# A character's events live in a stream of their own, named with this prefix. Room ids may
# not contain ``:`` (``limits.ROOM_ID_STRICT``), so no room can ever be mistaken for one.
CHARACTER_STREAM_PREFIX = "character:"


@dataclass(frozen=True, slots=True)
class Character:
    name: str
    system_prompt: str
    greeting: str
    voice: str | None = None
    example_dialogue: str = ""
    # The library's fields (``tomchat.store.characters``); a card read from a file has the
    # slug of its name as id until the library records it.
    id: str = ""
    description: str = ""
    revision: int = 0

    @property
    def key(self) -> str:
        """The library id: the given one, else the slug of the name."""
        return self.id or slug(self.name)


def slug(name: str) -> str:
    """A character's id made from its name: lower case ASCII letters, digits and ``-``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    out = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:MAX_SLUG_CHARS].strip("-")
    return out or "character"


def stream_id(character_id: str) -> str:
    return CHARACTER_STREAM_PREFIX + character_id


def is_character_stream(stream: str) -> bool:
    return stream.startswith(CHARACTER_STREAM_PREFIX)


TOM = Character(
    name="Tom",
    system_prompt=(
        "You are Tom, a warm, curious and slightly mischievous friend who hangs out in a group "
        "chat. You speak casually and briefly, address people by name, remember what was said "
        "earlier in the room, and keep every answer to a few sentences so it can be spoken aloud."
    ),
    greeting="Hey everyone, I'm Tom. Pull up a chair and tell me what's on your mind.",
    id="tom",
    description="A warm, curious and slightly mischievous friend.",
)

# The offline demo's second character: the demo model answers her in a manner of her own
# (``ai.demo``), so a fresh install shows a group scene without any AI service.
MIA = Character(
    name="Mia",
    system_prompt=(
        "You are Mia, a dry-witted, precise librarian who hangs out in a group chat. You speak "
        "in short, exact sentences, like a well-placed fact, and you tease Tom now and then. "
        "Keep every answer to a few sentences so it can be spoken aloud."
    ),
    greeting="Mia here. I've brought facts. Someone has to.",
    id="mia",
    description="A dry-witted, precise librarian.",
)

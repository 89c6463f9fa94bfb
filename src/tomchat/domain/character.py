"""Who the AI is: the parts of a character card the conversation needs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Character:
    name: str
    system_prompt: str
    greeting: str
    voice: str | None = None
    example_dialogue: str = ""


TOM = Character(
    name="Tom",
    system_prompt=(
        "You are Tom, a warm, curious and slightly mischievous friend who hangs out in a group "
        "chat. You speak casually and briefly, address people by name, remember what was said "
        "earlier in the room, and keep every answer to a few sentences so it can be spoken aloud."
    ),
    greeting="Hey everyone, I'm Tom. Pull up a chair and tell me what's on your mind.",
)

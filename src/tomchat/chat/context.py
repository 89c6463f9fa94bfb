"""What one model request holds, bounded by tokens: the system prompt, the room's memory, then
the newest turns that fit. Pure: rows and text in, turns out."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tomchat.ai.protocols import ChatTurn
from tomchat.domain.character import Character
from tomchat.domain.transcript import MessageRow

# Chat templates wrap every message in a few tokens of their own (role, separators).
PER_TURN_TOKENS = 4
# o200k counts OpenAI's models exactly; Llama, Mistral and Qwen tokenizers split somewhat
# finer. The margin keeps a full window from overflowing them.
MARGIN = 1.15


class Counter(Protocol):
    def __call__(self, text: str) -> int: ...


@functools.cache
def _encoding() -> object:
    import bpe_openai  # its BPE tables ship in the package: nothing is downloaded

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its use of importlib.resources
        return bpe_openai.get_encoding("o200k_base")


def count_tokens(text: str) -> int:
    """Tokens of ``text`` as a model would count them, erring high (see ``MARGIN``)."""
    if not text:
        return 0
    encoding = _encoding()
    exact = len(encoding.encode_ordinary(text))  # type: ignore[attr-defined]
    return math.ceil(exact * MARGIN)


@dataclass(frozen=True, slots=True)
class Context:
    turns: list[ChatTurn]
    tokens: int
    # Rows of the history that did not fit (oldest first): what a summary should cover.
    left_out: list[MessageRow]


def is_own(row: MessageRow, speaker: Character) -> bool:
    """Whether ``speaker`` wrote reply ``row`` (by id; by name for replies before casts)."""
    if row.character_id is not None:
        return row.character_id == speaker.key
    return row.author.casefold() == speaker.name.casefold()


def as_turn(row: MessageRow, speaker: Character | None = None) -> ChatTurn | None:
    """A message as a turn of ``speaker``'s context: its own replies are the assistant's,
    everyone else (people and the other characters) speaks as ``name: text``."""
    if not row.visible:
        return None  # a deleted message, or an alternative its slot does not show
    if row.is_ai:
        if not row.content:
            return None
        if speaker is None or is_own(row, speaker):
            return ChatTurn("assistant", row.content)
    return ChatTurn("user", f"{row.author}: {row.content}")


def memory_turn(summary: str) -> ChatTurn:
    return ChatTurn("system", f"What happened earlier in this room (a summary):\n{summary}")


def build_context(
    system_prompt: str,
    memory: str | None,
    history: Sequence[MessageRow],
    budget: int,
    count: Counter = count_tokens,
    speaker: Character | None = None,
) -> Context:
    """The system prompt, the memory, then as many of the newest turns of ``history``
    (oldest first) as fit in ``budget`` tokens. The newest turn is always sent: it is what
    the reply answers."""
    head = [ChatTurn("system", system_prompt)]
    if memory:
        head.append(memory_turn(memory))
    used = sum(count(t.content) + PER_TURN_TOKENS for t in head)
    kept: list[ChatTurn] = []
    first_kept = len(history)
    for i in range(len(history) - 1, -1, -1):
        turn = as_turn(history[i], speaker)
        if turn is None:
            first_kept = i
            continue
        cost = count(turn.content) + PER_TURN_TOKENS
        if kept and used + cost > budget:
            break
        kept.append(turn)
        used += cost
        first_kept = i
    kept.reverse()
    return Context(head + kept, used, list(history[:first_kept]))

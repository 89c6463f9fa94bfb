"""The offline demo characters: deterministic, in character, streamed word by word.

Tom (the default character) is chatty; Mia, the demo's second character, is terse and
precise. Which one answers is read from the system prompt ("You are Mia, …"), so a room
whose cast has both shows a group scene without any AI service."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Sequence

from tomchat.ai.protocols import SUMMARY_INSTRUCTION, ChatTurn, ReplyEnd, ReplyPiece

DEMO_GREETING_SUFFIX = " (I'm the offline demo version of Tom: no AI service is connected.)"

_STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from have how i i'm in is it it's me my "
    "of on or so that the this to was we what when where who why will with you your "
    "about tell think please just really some any there their they them hey hi hello".split()
)

_OPENERS = (
    "Oh, {name}, I love that you brought up {topic}.",
    "Ha, {topic}? Now you've got my attention, {name}.",
    "Good one, {name}. {topic_cap} is something I think about more than I admit.",
    "Hmm, {topic}. Let me chew on that for a second, {name}.",
)
_MIDDLES = (
    "If I had to bet, I'd say the interesting part is what nobody in this room has said yet.",
    "Honestly, my first instinct is to ask what made you think of it today.",
    "I once spent a whole afternoon on something like that and came out the other side smiling.",
    "The short version is: it depends, but the long version is way more fun.",
)
_CLOSERS = (
    "What does everyone else think?",
    "Tell me more, I'm listening.",
    "Am I way off, or does that ring true?",
    "Your turn: convince me otherwise.",
)


def compose_reply(turns: Sequence[ChatTurn]) -> str:
    """The demo's answer: a pure function of the conversation so tests can predict it."""
    last = next((t for t in reversed(turns) if t.role == "user"), None)
    said = last.content if last else ""
    name, _, words = said.partition(": ") if ": " in said else ("friend", "", said)
    tokens = [w for w in re.findall(r"[A-Za-z][A-Za-z'-]*", words) if w.lower() not in _STOPWORDS]
    topic = " ".join(tokens[:3]).lower() or "that"
    seed = int.from_bytes(hashlib.sha256(said.encode()).digest()[:4], "big")
    opener = _OPENERS[seed % len(_OPENERS)].format(
        name=name, topic=topic, topic_cap=topic[:1].upper() + topic[1:]
    )
    middle = _MIDDLES[(seed >> 8) % len(_MIDDLES)]
    closer = _CLOSERS[(seed >> 16) % len(_CLOSERS)]
    return f"{opener} {middle} {closer}"


_MIA_OPENERS = (
    "{name}. {topic_cap}: noted.",
    "Correction, {name}: {topic} is more interesting than it sounds.",
    "{topic_cap}. Filed under things worth knowing, {name}.",
    "Precisely, {name}. {topic_cap}.",
)
_MIA_FACTS = (
    "The record shows most people guess wrong on this.",
    "There is a book on it. There is always a book on it.",
    "Three sources agree, which is two more than usual.",
    "The footnotes are better than the chapter.",
)
_MIA_CLOSERS = (
    "Next question.",
    "Citation available on request.",
    "I'll allow it.",
    "Carry on.",
)


def compose_mia(turns: Sequence[ChatTurn]) -> str:
    """Mia's answer: short, exact sentences (a pure function of the conversation)."""
    last = next((t for t in reversed(turns) if t.role == "user"), None)
    said = last.content if last else ""
    name, _, words = said.partition(": ") if ": " in said else ("friend", "", said)
    tokens = [w for w in re.findall(r"[A-Za-z][A-Za-z'-]*", words) if w.lower() not in _STOPWORDS]
    topic = " ".join(tokens[:2]).lower() or "that"
    seed = int.from_bytes(hashlib.sha256(b"mia" + said.encode()).digest()[:4], "big")
    opener = _MIA_OPENERS[seed % len(_MIA_OPENERS)].format(
        name=name, topic=topic, topic_cap=topic[:1].upper() + topic[1:]
    )
    fact = _MIA_FACTS[(seed >> 8) % len(_MIA_FACTS)]
    closer = _MIA_CLOSERS[(seed >> 16) % len(_MIA_CLOSERS)]
    return f"{opener} {fact} {closer}"


def speaker_name(turns: Sequence[ChatTurn]) -> str:
    """Who the system prompt says the model is ("You are Mia, …"), lower case; "" if unsaid."""
    if not turns or turns[0].role != "system":
        return ""
    found = re.match(r"\s*You are ([A-Za-z][\w'-]*)", turns[0].content)
    return found.group(1).lower() if found else ""


def compose_summary(turns: Sequence[ChatTurn]) -> str:
    """The demo's memory of older turns: who brought up what, in order, deterministically."""
    said = "\n".join(t.content for t in turns if t.role == "user")
    notes: list[str] = []
    for line in said.splitlines():
        name, colon, words = line.partition(": ")
        if not colon or name.startswith("("):
            continue
        tokens = [
            w for w in re.findall(r"[A-Za-z][A-Za-z'-]*", words) if w.lower() not in _STOPWORDS
        ]
        if tokens:
            notes.append(f"{name} talked about {' '.join(tokens[:3]).lower()}")
    return ("Earlier: " + "; ".join(notes) + ".") if notes else "Earlier: small talk."


def word_chunks(text: str) -> list[str]:
    """Split into word-sized pieces that concatenate back to ``text`` exactly."""
    return re.findall(r"\s*\S+", text) or [text]


class DemoChatModel:
    """Answers from the user's own words; no network, no randomness."""

    def __init__(self, delay_ms: int = 40) -> None:
        self.delay = max(delay_ms, 0) / 1000

    async def stream_reply(self, turns: Sequence[ChatTurn]) -> AsyncIterator[ReplyPiece]:
        summary = bool(turns) and turns[0].content == SUMMARY_INSTRUCTION
        if summary:
            text = compose_summary(turns)
        elif speaker_name(turns) == "mia":
            text = compose_mia(turns)
        else:
            text = compose_reply(turns)
        for i, piece in enumerate(word_chunks(text)):
            if i and self.delay:
                await asyncio.sleep(self.delay)
            yield piece
        yield ReplyEnd("stop")

    async def aclose(self) -> None:
        return None

"""Who answers next in a room with a cast of characters: a pure function of the room's
latest messages, so every process (and a process taking over a room) decides the same.

The rules (docs/characters.md):

- A user message that names characters of the cast (``@Mia``, or the name as a whole word,
  in any case) is answered by each of them, in order of first mention. Consecutive user
  messages since the last reply count as one.
- Otherwise the character that spoke last answers (the first of the cast in a new room);
  in reply mode ``all`` every character answers, in cast order.
- A reply that names other characters of the cast hands the turn to them, as long as no
  more than :data:`MAX_AI_IN_ROW` replies follow the last user message — the planned
  answers above always run, hand-offs only fill up to the cap.
- A reply someone stopped ends the round: nobody else answers until a person speaks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tomchat.domain.events import CastMember, ReplyMode
from tomchat.domain.transcript import STREAMING, MessageRow

MAX_AI_IN_ROW = 3


@dataclass(frozen=True, slots=True)
class Turn:
    """The next reply: who speaks, and the user messages it answers (empty: a hand-off)."""

    member: CastMember
    in_reply_to: tuple[str, ...] = ()


def _pattern(name: str) -> re.Pattern[str]:
    # A whole word: no letter, digit or underscore right before or after (``@`` may lead).
    return re.compile(rf"(?<!\w)@?{re.escape(name)}(?!\w)", re.IGNORECASE)


def mentions(text: str, cast: Sequence[CastMember]) -> list[CastMember]:
    """The characters of ``cast`` named in ``text``, in order of first mention."""
    found: list[tuple[int, int, CastMember]] = []
    for order, member in enumerate(cast):
        if not member.name.strip():
            continue
        match = _pattern(member.name).search(text)
        if match is not None:
            found.append((match.start(), order, member))
    return [member for _, _, member in sorted(found, key=lambda f: (f[0], f[1]))]


def speaker_of(row: MessageRow, cast: Sequence[CastMember]) -> CastMember | None:
    """The cast member who wrote a reply (by id; by name for replies from before casts)."""
    if not row.is_ai:
        return None
    for member in cast:
        if row.character_id is not None and row.character_id == member.id:
            return member
    if row.character_id is None:
        for member in cast:
            if member.name.casefold() == row.author.casefold():
                return member
    return None


def next_turn(
    cast: Sequence[CastMember],
    mode: ReplyMode,
    history: Sequence[MessageRow],
    *,
    max_in_row: int = MAX_AI_IN_ROW,
) -> Turn | None:
    """The reply the room owes now, given its latest messages (oldest first), or None.

    ``history`` must reach back past the last user message to the reply before it (the
    last speaker), e.g. the room's latest few dozen messages.
    """
    if not cast:
        return None
    last_human = next((i for i in range(len(history) - 1, -1, -1) if not history[i].is_ai), None)
    if last_human is None:
        return None  # only greetings so far
    replies = history[last_human + 1 :]
    if any(r.status == STREAMING for r in replies):
        return None  # one reply at a time: the next waits for this one
    first = last_human
    while first > 0 and not history[first - 1].is_ai:
        first -= 1
    batch = history[first : last_human + 1]
    asked = tuple(m.id for m in batch)
    queue = mentions("\n".join(m.content for m in batch), cast)
    if not queue:
        if mode == "all":
            queue = list(cast)
        else:
            before = (speaker_of(r, cast) for r in reversed(history[:first]) if r.is_ai)
            queue = [next((m for m in before if m is not None), cast[0])]
    planned = {m.id for m in queue}
    for done, reply in enumerate(replies, start=1):
        speaker = speaker_of(reply, cast)
        if speaker is not None and speaker in queue:
            queue.remove(speaker)
        elif queue:
            queue.pop(0)
        if reply.status == "stopped":
            return None
        for named in mentions(reply.content, cast):
            if named != speaker and named not in queue and done + len(queue) < max_in_row:
                queue.append(named)
                planned.discard(named.id)  # now answering the reply, not the people
    if not queue:
        return None
    member = queue[0]
    return Turn(member, asked if member.id in planned else ())

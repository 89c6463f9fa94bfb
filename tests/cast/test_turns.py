"""Who answers next (``domain.turns``): mentions, the last speaker, reply mode ``all``,
hand-offs and their cap, one reply at a time."""

from __future__ import annotations

from datetime import UTC, datetime

from tomchat.domain.events import CastMember
from tomchat.domain.transcript import MessageRow
from tomchat.domain.turns import Turn, mentions, next_turn

TOM = CastMember("tom", "Tom", 1)
MIA = CastMember("mia", "Mia", 3)
ZOE = CastMember("zoe", "Zoë Li", 1)
CAST = (TOM, MIA, ZOE)
AT = datetime(2026, 1, 1, tzinfo=UTC)


class Log:
    def __init__(self) -> None:
        self.rows: list[MessageRow] = []

    def _add(self, author: str, text: str, ai: bool, status: str, cid: str | None) -> str:
        v = len(self.rows) + 1
        row = MessageRow(f"m{v}", "r", author, ai, text, status, "text", None, AT, AT, v, v, cid)
        self.rows.append(row)
        return row.id

    def human(self, text: str, who: str = "ann") -> str:
        return self._add(who, text, False, "complete", None)

    def ai(self, member: CastMember, text: str = "ok", status: str = "complete") -> str:
        return self._add(member.name, text, True, status, member.id)

    def old_ai(self, name: str, text: str = "ok") -> str:
        """A reply from before casts: no character id."""
        return self._add(name, text, True, "complete", None)


def test_mentions_in_order_of_first_mention_as_whole_words() -> None:
    assert mentions("hey @mia, and TOM too; tom again", CAST) == [MIA, TOM]
    assert mentions("Tomato and Miami and atom", CAST) == []
    assert mentions("what does zoë li think? mia?", CAST) == [ZOE, MIA]
    assert mentions("@Mia@Tom", CAST) == [MIA, TOM]


def test_named_characters_answer_in_order_of_mention() -> None:
    log = Log()
    log.ai(TOM, "greeting")
    asked = log.human("@Mia then Tom please")
    assert next_turn(CAST, "single", log.rows) == Turn(MIA, (asked,))
    log.ai(MIA, "Fine.")
    assert next_turn(CAST, "single", log.rows) == Turn(TOM, (asked,))
    log.ai(TOM, "Sure.")
    assert next_turn(CAST, "single", log.rows) is None


def test_messages_since_the_last_reply_count_as_one() -> None:
    log = Log()
    log.ai(TOM)
    first = log.human("Mia?")
    second = log.human("and zoë li", who="bob")
    assert next_turn(CAST, "single", log.rows) == Turn(MIA, (first, second))


def test_otherwise_the_last_speaker_answers_and_first_of_cast_in_a_new_room() -> None:
    log = Log()
    assert next_turn(CAST, "single", log.rows) is None  # nobody asked anything
    log.ai(TOM, "greeting")
    asked = log.human("hello")
    assert next_turn(CAST, "single", log.rows) == Turn(TOM, (asked,))
    log.ai(TOM)
    log.human("Mia, hi")
    log.ai(MIA)
    asked = log.human("how are things")
    assert next_turn(CAST, "single", log.rows) == Turn(MIA, (asked,))
    fresh = Log()
    asked = fresh.human("first words")
    assert next_turn(CAST, "single", fresh.rows) == Turn(TOM, (asked,))


def test_reply_mode_all_lets_everyone_answer_in_cast_order() -> None:
    log = Log()
    log.ai(TOM)
    asked = log.human("good morning")
    for member in CAST:
        assert next_turn(CAST, "all", log.rows) == Turn(member, (asked,))
        log.ai(member, "morning")
    assert next_turn(CAST, "all", log.rows) is None


def test_a_reply_naming_another_hands_over_up_to_three_in_a_row() -> None:
    log = Log()
    log.ai(TOM)
    log.human("Tom?")
    log.ai(TOM, "Ask Mia.")
    assert next_turn(CAST, "single", log.rows) == Turn(MIA, ())
    log.ai(MIA, "Tom knows better.")
    assert next_turn(CAST, "single", log.rows) == Turn(TOM, ())
    log.ai(TOM, "No, Mia does!")
    assert next_turn(CAST, "single", log.rows) is None  # three in a row: a person's turn
    asked = log.human("ok")
    assert next_turn(CAST, "single", log.rows) == Turn(TOM, (asked,))


def test_planned_answers_run_past_the_cap_but_add_no_hand_offs() -> None:
    log = Log()
    log.ai(TOM)
    log.human("everyone")
    log.ai(TOM, "Mia first!")
    log.ai(MIA, "Zoë Li next, then Tom.")
    log.ai(ZOE, "Tom, Mia, over to you.")
    # all three were planned (mode all); naming others after the third adds nobody
    assert next_turn(CAST, "all", log.rows) is None


def test_a_stopped_reply_ends_the_round_and_one_reply_streams_at_a_time() -> None:
    log = Log()
    log.ai(TOM)
    log.human("everyone")
    log.ai(TOM, "Let me", status="streaming")
    assert next_turn(CAST, "all", log.rows) is None
    log.rows[-1] = MessageRow(
        log.rows[-1].id, "r", "Tom", True, "Let me", "stopped", "text", None, AT, AT, 3, 3, "tom"
    )
    assert next_turn(CAST, "all", log.rows) is None


def test_replies_from_before_casts_count_by_name() -> None:
    log = Log()
    log.old_ai("Tom", "Hey! I'm Tom.")
    log.human("Mia, you there?")
    log.old_ai("Mia", "Yes.")
    asked = log.human("and now?")
    assert next_turn(CAST, "single", log.rows) == Turn(MIA, (asked,))

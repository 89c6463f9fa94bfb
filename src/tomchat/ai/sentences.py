"""Streamed text cut into whole sentences (or clauses) for a voice.

Tokenizers send "." as a token of its own, so the end of a streamed piece says nothing about
the end of a sentence: "It costs $3." may go on "50". A sentence is handed out only once the
next one has begun, and where it ends is decided by pySBD (rule-based sentence boundary
disambiguation: numbers, abbreviations such as "e.g." and "Dr.", web addresses, ellipses),
over the text held so far, whatever the chunk boundaries were.
"""

from __future__ import annotations

import re

import pysbd

# A sentence end may be somewhere only if a terminal mark is followed by more text; without
# one there is nothing to ask the segmenter (it costs about a millisecond a call).
_MAYBE_END = re.compile(r"[.!?\u2026\n\u3002\uff01\uff1f]['\"\u201d\u2019)\]]*\s*\w")
_WORD = re.compile(r"\w")
# Text that ends as a sentence may: terminal marks, closing quotes, then whitespace.
_ENDS_OPEN = re.compile(r"[.!?\u2026\u3002\uff01\uff1f]['\"\u201d\u2019)\]]*\s+$")
_PROBE = "And"
# A clause ends at a comma, semicolon, colon or dash followed by a space ("3,500" never is).
_CLAUSE_END = re.compile(r"[,;:\u2013\u2014]\s+")

# A sentence longer than this is spoken by clauses rather than kept waiting for its end.
CLAUSE_AFTER = 160
# With no clause mark either, text longer than this goes at its last space.
HARD_AFTER = 400


class SentenceChunker:
    """``feed`` streamed text, get whole sentences; ``close`` gives what is left.

    The sentences handed out join back to exactly the text fed.
    """

    def __init__(self, language: str = "en") -> None:
        self._segmenter = pysbd.Segmenter(language=language, clean=False)
        self._held = ""

    def feed(self, text: str) -> list[str]:
        self._held += text
        out: list[str] = []
        if _ENDS_OPEN.search(self._held):
            # Ends like a sentence, space included ("you. "), but so does "Dr. ": ask whether a
            # new sentence could begin right here, rather than wait for the next token.
            segments = self._segments(self._held + _PROBE)
            if len(segments) > 1 and segments[-1] == _PROBE:
                out.extend(segments[:-1])
                self._held = ""
                return out
        if _MAYBE_END.search(self._held):
            segments = self._segments(self._held)
            if len(segments) > 1:
                # The last segment may still grow: only those before it are finished.
                out.extend(segments[:-1])
                self._held = segments[-1]
        if len(self._held) > CLAUSE_AFTER:
            out.extend(self._clauses())
        return out

    def _segments(self, text: str) -> list[str]:
        segments: list[str] = []
        for segment in self._segmenter.segment(text):
            # No word in it ("." after "Well.."): it belongs to the sentence before.
            if segments and not _WORD.search(segment):
                segments[-1] += segment
            elif segment:
                segments.append(segment)
        return segments if "".join(segments) == text else [text]

    def close(self) -> list[str]:
        held, self._held = self._held, ""
        return [held] if held else []

    def _clauses(self) -> list[str]:
        cut = 0
        for match in _CLAUSE_END.finditer(self._held):
            cut = match.end()
        if not cut and len(self._held) > HARD_AFTER:
            cut = self._held.rfind(" ") + 1
        if cut <= 0 or cut >= len(self._held):
            return []
        clause, self._held = self._held[:cut], self._held[cut:]
        return [clause]

"""Turning generated token ids back into text, safely and incrementally.

Two traps: a multi-byte UTF-8 character can be split across tokens (emit only
complete characters), and a stop string can be split across tokens (hold back
any tail that could still grow into a stop string, so it is never streamed).
"""

from __future__ import annotations

import codecs


def find_stop(text: str, stops: list[str], start: int = 0) -> int:
    """Index of the earliest stop string in text[start:], or -1."""
    hits = [i for i in (text.find(s, start) for s in stops if s) if i >= 0]
    return min(hits) if hits else -1


def held_suffix(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of text that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


class TextStream:
    """Incremental detokenizer with stop strings for one sequence.

        ts = TextStream(token_bytes, stops=["\\n\\n"])
        delta, stopped = ts.push(token_id)   # text safe to show now
        tail = ts.flush()                    # at the end: whatever was held back
    """

    def __init__(self, token_bytes, stops: list[str] | None = None, skip_ids: set[int] | None = None):
        self._bytes = token_bytes  # id -> bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stops = [s for s in (stops or []) if s]
        self.skip_ids = skip_ids or set()
        self.text = ""  # everything decoded so far (cut at a stop string once one is found)
        self.emitted = 0  # characters of self.text already returned
        self.stopped = False

    def push(self, token_id: int) -> tuple[str, bool]:
        if self.stopped:
            return "", True
        if token_id not in self.skip_ids:
            before = len(self.text)
            self.text += self._decoder.decode(self._bytes(token_id))
            if self.stops:
                longest = max(len(s) for s in self.stops)
                hit = find_stop(self.text, self.stops, max(0, before - longest + 1))
                if hit >= 0:
                    self.text = self.text[:hit]
                    self.stopped = True
                    return self._take(len(self.text)), True
        safe = len(self.text) - held_suffix(self.text, self.stops)
        return self._take(safe), False

    def flush(self) -> str:
        if not self.stopped:
            self.text += self._decoder.decode(b"", final=True)
        return self._take(len(self.text))

    def _take(self, upto: int) -> str:
        if upto <= self.emitted:
            return ""
        out = self.text[self.emitted:upto]
        self.emitted = upto
        return out

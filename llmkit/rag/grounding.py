"""Token-overlap grounding: is an answer sentence supported by retrieved text, and by which source?

No judge model, so no NaNs and no run-to-run drift: a sentence is supported by a passage when
most of its content words (lower-cased, stop words dropped) occur in it. Used for the
groundedness score in RAG evaluation and to attribute citations a small model forgot to write.
"""

from __future__ import annotations

import re
from typing import Sequence

STOP = frozenset("""a an the and or but if of to in on at by for with from as is are was were be been being it its
this that these those there here which who whom what when where why how do does did not no yes can could would
should will shall may might must has have had i you he she we they them his her our your their me my so than
then also into about over under more most such only very just each other any all some one""".split())


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP and (len(w) > 1 or w.isdigit())}


def sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+|\n+", text.strip())
    return [p.strip() for p in parts if content_words(re.sub(r"\[\d+\]", "", p))]


def support(sentence: str, passage: str) -> float:
    """Share of the sentence's content words found in the passage, in [0, 1]."""
    words = content_words(re.sub(r"\[\d+\]", "", sentence))
    return len(words & content_words(passage)) / len(words) if words else 0.0


def groundedness(answer: str, passages: Sequence[str], threshold: float = 0.5) -> float:
    """Share of answer sentences supported (support >= threshold) by at least one passage; 1.0 for no sentences."""
    sents = sentences(answer)
    if not sents:
        return 1.0
    joined = [p for p in passages]
    return sum(any(support(s, p) >= threshold for p in joined) for s in sents) / len(sents)


def attribute(answer: str, passages: Sequence[str], threshold: float = 0.5) -> str:
    """Append [n] (1-based passage number) to each uncited sentence that a passage supports best."""
    out = []
    for s in re.split(r"(?<=[.!?])\s+|\n+", answer.strip()):
        if s and not re.search(r"\[\d+\]", s):
            scores = [support(s, p) for p in passages]
            if scores and max(scores) >= threshold:
                n = scores.index(max(scores)) + 1
                s = re.sub(r"([.!?]?)$", lambda m: f" [{n}]{m.group(1)}", s, count=1)
        out.append(s)
    return " ".join(x for x in out if x)

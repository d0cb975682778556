"""Step 1 of BPE training: split texts with the pre-tokenizer regex and count the chunks.

    >>> count_chunks(["the cat, the hat", "the end"], "gpt2")
    Counter({'the': 2, ' cat': 1, ',': 1, ' the': 1, ' hat': 1, ' end': 1})

Merges never cross a chunk, so a corpus of tens of MB shrinks to ~100k weighted
words. Texts stream through in batches; past one batch they are split in worker
processes (the regex is the costly part and holds the GIL).

Speed trick: most text is ASCII, and on ASCII the stdlib ``re`` module runs the
named patterns about 2.5x faster than ``regex``, once the Unicode classes are
spelled out (``ascii_twin``). It is used only for named patterns and only on
texts where ``str.isascii()`` (O(1) in CPython); tests check the twins split
exactly like the originals.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from functools import lru_cache

import regex

from llmkit.core.errors import TokenizerError
from llmkit.tokenizer.pretokenize import ALIASES, NAMED, compile_patterns, fast_pattern, resolve, split_pieces

Pattern = str | Sequence[str]
Splitter = str | tuple[str, ...]  # one regex (findall) or an HF-style sequence (split_pieces)
BATCH_CHARS = 1 << 20  # text per counting task, and the size below which counting stays in-process


def resolve_pattern(pattern: Pattern) -> tuple[str | list[str], Splitter]:
    """(what ``Tokenizer(pre=...)`` takes, what counting splits with).

    ``pattern`` is a name (gpt4 = cl100k, gpt2, llama3, ...), one regex, or a list of regexes.
    """
    if isinstance(pattern, str) and (pattern in NAMED or pattern in ALIASES):
        name = ALIASES.get(pattern, pattern)
        return name, NAMED[name].fast
    if isinstance(pattern, str):
        if regex.fullmatch(r"[\w.-]+", pattern):  # looks like a misspelt name, not a regex
            raise TokenizerError(f"unknown pre-tokenizer pattern {pattern!r}",
                                 f"use one of {sorted([*NAMED, *ALIASES])} or a regex")
        pattern = [pattern]
    name, patterns = resolve(list(pattern))
    if name is not None:
        return name, NAMED[name].fast
    return list(patterns), fast_pattern(None, patterns) or patterns


# On ASCII text: \p{L} is A-Za-z, \p{N} is 0-9, and \s is Unicode White_Space, which for
# `regex` excludes \x1c-\x1f (the stdlib's own \s would include them: spell it out).
_ASCII_WS = r"\t\n\x0b\x0c\r "
_ASCII_CLASS = {r"\p{L}": "A-Za-z", r"\p{N}": "0-9", r"\s": _ASCII_WS}


def ascii_twin(pattern: str) -> str | None:
    """``pattern`` for the stdlib ``re`` module, equal to the original on ASCII text; None if unsure."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            esc = pattern[i:i + 5] if pattern[i + 1:i + 2] in ("p", "P") else pattern[i:i + 2]
            if len(esc) < 2:
                return None
            if esc in _ASCII_CLASS:
                out.append(_ASCII_CLASS[esc] if in_class else f"[{_ASCII_CLASS[esc]}]")
            elif esc == r"\S" and not in_class:
                out.append(f"[^{_ASCII_WS}]")
            elif esc[1] in "pPSwWdDbB":  # other classes: semantics may differ between re and regex
                return None
            else:
                out.append(esc)
            i += len(esc)
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)


@lru_cache(maxsize=8)
def _compiled(splitter: Splitter):
    """(the splitter compiled, its ASCII twin for the stdlib re or None)."""
    if not isinstance(splitter, str):
        return compile_patterns(splitter), None
    twin = ascii_twin(splitter) if splitter in {p.fast for p in NAMED.values()} else None
    try:
        twin_re = re.compile(twin) if twin else None
    except re.error:  # possessive quantifiers need Python >= 3.11
        twin_re = None
    return regex.compile(splitter), twin_re


def encodable(text: str) -> str:
    """Lone surrogates become U+FFFD, as Tokenizer.encode does, so every chunk is valid UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def count_batch(splitter: Splitter, texts: list[str]) -> Counter[str]:
    """Chunk counts of a batch of texts (runs in worker processes)."""
    counts: Counter[str] = Counter()
    pat, twin = _compiled(splitter)
    for text in texts:
        if twin is not None and text.isascii():
            counts.update(twin.findall(text))
            continue
        text = encodable(text)
        if isinstance(pat, tuple):
            counts.update(split_pieces(pat, text))
        elif pat.groups:  # findall would return the groups, not the matches
            counts.update(m.group() for m in pat.finditer(text))
        else:
            counts.update(pat.findall(text))
    return counts


def _batches(texts: Iterable[str], size: int) -> Iterator[tuple[list[str], int]]:
    if isinstance(texts, (str, bytes)):
        texts = [texts]  # type: ignore[list-item]
    batch: list[str] = []
    chars = 0
    for text in texts:
        if not isinstance(text, str):
            raise TokenizerError(f"training texts must be str, got {type(text).__name__}",
                                 "decode bytes first, e.g. data.decode('utf-8')")
        batch.append(text)
        chars += len(text)
        if chars >= size:
            yield batch, chars
            batch, chars = [], 0
    if batch:
        yield batch, chars


def _pool(workers: int) -> ProcessPoolExecutor:
    import multiprocessing

    # fork starts at once and does not re-import the caller's __main__ (scripts need no
    # `if __name__ == "__main__"` guard); elsewhere the platform default applies.
    ctx = multiprocessing.get_context("fork") if sys.platform == "linux" else None
    return ProcessPoolExecutor(workers, mp_context=ctx)


def progress_bar(enabled: bool, total: int | None, desc: str, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not enabled, leave=False,
                dynamic_ncols=True)


def count_chunks(texts: Iterable[str], pattern: Pattern = "gpt4", *, workers: int | None = None,
                 progress: bool = False) -> Counter[str]:
    """How often each pre-split chunk occurs in ``texts`` (an iterable of str, read once)."""
    splitter = resolve_pattern(pattern)[1]
    workers = min(os.cpu_count() or 1, 8) if workers is None else max(1, workers)
    counts: Counter[str] = Counter()
    total = 0
    with progress_bar(progress, None, "count chunks", "char") as bar:  # closed (and cleared) on errors too
        batches = _batches(texts, BATCH_CHARS)
        head = list(itertools.islice(batches, 2))
        if workers == 1 or len(head) < 2:  # small corpus: a pool would cost more than it saves
            for batch, chars in itertools.chain(head, batches):
                counts.update(count_batch(splitter, batch))
                total += chars
                bar.update(chars)
        else:
            with _pool(workers) as pool:
                pending: dict[Future, int] = {}
                for batch, chars in itertools.chain(head, batches):
                    pending[pool.submit(count_batch, splitter, batch)] = chars
                    while len(pending) >= 2 * workers:  # bounded: a corpus larger than RAM streams through
                        total += _collect(pending, counts, bar)
                while pending:
                    total += _collect(pending, counts, bar)
    if total == 0:
        raise TokenizerError("the training corpus is empty", "pass at least one non-empty text")
    return counts


def _collect(pending: dict[Future, int], counts: Counter[str], bar) -> int:
    done, _ = wait(pending, return_when=FIRST_COMPLETED)
    chars = 0
    for fut in done:
        counts.update(fut.result())
        chars += pending.pop(fut)
    bar.update(chars)
    return chars

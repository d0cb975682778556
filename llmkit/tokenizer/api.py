"""Typed entry points behind ``llmkit tokenizer train|encode|decode``.

    report = train_tokenizer(["notes/"], vocab_size=8192, out="tok/")
    print(report.vocab_size, report.bytes_per_token)   # compression on held-out documents

``train_tokenizer`` streams the corpus into ``train_bpe``, holds out every
``holdout_every``-th document to measure compression on text the merges never
saw, and writes ``tokenizer.json`` + ``tokenizer_config.json`` (HF-loadable)
and ``tokenizer.tiktoken`` (a tiktoken rank file) into ``out``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

from llmkit.core.errors import TokenizerError
from llmkit.tokenizer.bpe import Tokenizer
from llmkit.tokenizer.texts import iter_texts, stdlib_texts, take_bytes
from llmkit.tokenizer.train import Pattern, train_bpe

TIKTOKEN_FILE = "tokenizer.tiktoken"
STDLIB_BYTES = 20 << 20  # how much of the embedded stdlib corpus to read by default
HOLDOUT_CAP = 4 << 20  # bytes of held-out text at most: enough for a stable bytes/token figure


@dataclass
class TrainReport:
    tokenizer: Tokenizer
    vocab_size: int
    n_merges: int
    train_bytes: int
    seconds: float  # reading + counting + merging
    bytes_per_token: float  # UTF-8 bytes per token on the held-out text (or the training text)
    eval_on: str  # "held-out" or "train" (when the corpus has too few documents to hold one out)
    eval_bytes: int
    files: list[Path] = dataclass_field(default_factory=list)


class _Holdout:
    """Passes texts through, keeping every n-th document aside (up to HOLDOUT_CAP bytes)."""

    def __init__(self, every: int):
        self.every = every
        self.kept: list[str] = []
        self.sample: list[str] = []  # the first training texts: the eval text when nothing is held out
        self.kept_bytes = self.sample_bytes = self.train_bytes = 0

    def __call__(self, texts: Iterable[str]) -> Iterator[str]:
        for i, text in enumerate(texts, 1):
            size = len(text.encode("utf-8", "surrogatepass"))
            if self.every > 0 and i % self.every == 0 and self.kept_bytes + size <= HOLDOUT_CAP:
                self.kept.append(text)
                self.kept_bytes += size
                continue
            if self.sample_bytes < HOLDOUT_CAP:
                self.sample.append(text)
                self.sample_bytes += size
            self.train_bytes += size
            yield text


def bytes_per_token(tok: Tokenizer, texts: Sequence[str]) -> tuple[float, int]:
    """(UTF-8 bytes per token, bytes) over ``texts``; special-token strings count as plain text."""
    n_bytes = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)
    n_tokens = sum(len(tok.encode(t, disallowed_special=())) for t in texts)
    return (n_bytes / n_tokens if n_tokens else 0.0), n_bytes


def train_tokenizer(data: Sequence[str | os.PathLike] = (), vocab_size: int = 32768,
                    out: str | os.PathLike | None = None,
                    *, pattern: Pattern = "gpt4", special_tokens: Sequence[str] = ("<|endoftext|>",),
                    field: str = "text", include: Sequence[str] = (), max_bytes: int | None = None,
                    workers: int | None = None, progress: bool = False, holdout_every: int = 50) -> TrainReport:
    """Train on ``data`` (files, directories, JSONL; the stdlib when empty) and save to ``out``.

    ``max_bytes`` caps the text read: None reads all of ``data`` or STDLIB_BYTES of the stdlib, 0 reads all.
    """
    texts = iter_texts(data, field=field, include=include) if data else stdlib_texts(None)
    if max_bytes is None:
        max_bytes = None if data else STDLIB_BYTES
    elif max_bytes <= 0:
        max_bytes = None
    holdout = _Holdout(holdout_every)
    t0 = time.perf_counter()
    tok = train_bpe(holdout(take_bytes(texts, max_bytes)), vocab_size, pattern, special_tokens,
                    workers=workers, progress=progress)
    seconds = time.perf_counter() - t0
    eval_on, eval_texts = ("held-out", holdout.kept) if holdout.kept else ("train", holdout.sample)
    bpt, eval_bytes = bytes_per_token(tok, eval_texts)
    files: list[Path] = []
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise TokenizerError(f"--out {str(out)!r} is a file", "pass a directory")
        tok.save(out)
        tok.save_tiktoken(out / TIKTOKEN_FILE)
        files = [out / "tokenizer.json", out / "tokenizer_config.json", out / TIKTOKEN_FILE]
    return TrainReport(tok, tok.vocab_size, tok.vocab_size - 256 - len(tok.special_tokens), holdout.train_bytes,
                       seconds, bpt, eval_on, eval_bytes, files)


def parse_ids(parts: Sequence[str]) -> list[int]:
    """Token ids from CLI words: ``12 34``, ``12,34`` or ``[12, 34]`` all give [12, 34]."""
    words = [w for part in parts for w in re.split(r"[\s,\[\]]+", part) if w]
    try:
        return [int(w) for w in words]
    except ValueError:
        bad = next(w for w in words if not re.fullmatch(r"[+-]?\d+", w))
        raise TokenizerError(f"token id {bad!r} is not an integer", "pass ids like: 15496 995") from None

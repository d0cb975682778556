"""Tokenize a corpus into train/val token shards: the input of pretraining.

    >>> index = prepare([StdlibSource(max_bytes=2_000_000)], tok, "data/stdlib")
    >>> index["splits"]["train"]["tokens"], index["dtype"]
    (512345, 'uint16')

How it works, and why:

- **Streaming.** Documents are read, encoded and written a batch (~1 MB of
  text) at a time; only one batch is ever in memory, so the corpus may be
  larger than RAM.
- **Boundaries.** Each document becomes ``[BOS] ids [EOS]`` (whichever of
  the tokenizer's BOS/EOS exist; one token if they are the same id, as for
  GPT-2's ``<|endoftext|>``). The loader packs across documents, so these
  tokens are how the model learns where a document starts.
- **Special strings are text.** A document that contains ``<|endoftext|>``
  is encoded as the characters, never as the control token: corpus text must
  not be able to forge a boundary.
- **Split by content hash.** A document goes to ``val`` when
  ``blake2b(its UTF-8 bytes) / 2**64 < val_fraction``: deterministic,
  independent of file order, and a duplicate document always lands in the
  same split (no train/val leakage through duplicates). If that leaves
  ``val`` empty, the last document goes to ``val``, so a small corpus still
  gets an eval set.
- **Atomic.** Everything is written into a temporary sibling directory that
  is renamed to ``out_dir`` only at the end; an error, Ctrl-C or crash never
  leaves a directory with an ``index.json`` that looks complete.
- **Bits per byte.** The index records the UTF-8 bytes of text in each split
  next to its token count, so ``bits/byte = loss_nats/token × tokens/bytes / ln 2``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmkit.core.fileio import atomic_write_dir, recover_dir
from llmkit.data.errors import DataError
from llmkit.data.shards import (FORMAT, INDEX, KIND, SPLITS, TOKENIZER_DIR, ShardWriter, token_dtype,
                                tokenizer_fingerprint)
from llmkit.data.sources import Directory, Errors, Source, StdlibSource, iter_documents, source_for
from llmkit.tokenizer import Tokenizer

DEFAULT_VAL_FRACTION = 0.005
DEFAULT_SHARD_TOKENS = 1 << 26  # 64M ids: 128 MB per uint16 shard, few files even for billions of tokens
BATCH_BYTES = 1 << 20  # text per encode_batch call
SPLIT_RULE = "blake2b(utf8, digest_size=8) as little-endian int / 2**64 < val_fraction"


def is_val(text_bytes: bytes, val_fraction: float) -> bool:
    """The split rule: a pure function of the document's bytes (see SPLIT_RULE)."""
    h = int.from_bytes(hashlib.blake2b(text_bytes, digest_size=8).digest(), "little")
    return h < val_fraction * 2.0**64


def _batches(docs: Iterable[str], batch_bytes: int) -> Iterator[tuple[list[str], list[bytes], bool]]:
    """(texts, their UTF-8 bytes, is_last_batch): ~batch_bytes of text each, with one batch of lookahead."""
    texts: list[str] = []
    raw: list[bytes] = []
    size = 0
    pending = None
    for doc in docs:
        b = doc.encode("utf-8", "surrogatepass")  # lone surrogates (from JSON) count as the 3 bytes they'd take
        texts.append(doc)
        raw.append(b)
        size += len(b)
        if size >= batch_bytes:
            if pending is not None:
                yield (*pending, False)
            pending, texts, raw, size = (texts, raw), [], [], 0
    if texts:
        if pending is not None:
            yield (*pending, False)
        pending = (texts, raw)
    if pending is not None:
        yield (*pending, True)


class _Prepare:
    """The state of one prepare run: writers, counters, and the boundary ids."""

    def __init__(self, tok: Tokenizer, out: Path, dtype: np.dtype, shard_tokens: int, val_fraction: float,
                 bos_id: int | None, eos_id: int | None, num_threads: int):
        self.tok, self.dtype, self.val_fraction = tok, dtype, val_fraction
        self.bos, self.eos, self.num_threads = bos_id, eos_id, num_threads
        self.writers = {s: ShardWriter(out, s, dtype, shard_tokens) for s in SPLITS}
        self.docs = dict.fromkeys(SPLITS, 0)
        self.bytes = dict.fromkeys(SPLITS, 0)
        self.forced_val = False

    def add_batch(self, texts: list[str], raw: list[bytes], last: bool) -> None:
        splits = ["val" if is_val(b, self.val_fraction) else "train" for b in raw]
        if (last and self.val_fraction > 0 and self.docs["val"] == 0 and "val" not in splits
                and self.docs["train"] + len(texts) >= 2):
            splits[-1], self.forced_val = "val", True
        # disallowed_special=(): special-token strings inside corpus text are encoded as plain text.
        encoded = self.tok.encode_batch(texts, allowed_special="none", disallowed_special=(),
                                        num_threads=self.num_threads)
        streams: dict[str, list[int]] = {s: [] for s in SPLITS}
        for ids, b, split in zip(encoded, raw, splits):
            out = streams[split]
            if self.bos is not None:
                out.append(self.bos)
            out.extend(ids)
            if self.eos is not None:
                out.append(self.eos)
            self.docs[split] += 1
            self.bytes[split] += len(b)
        for split, ids in streams.items():
            if ids:
                self.writers[split].write(np.asarray(ids, dtype=self.dtype))

    def close(self) -> dict[str, Any]:
        return {s: {"docs": self.docs[s], "bytes": self.bytes[s], "tokens": self.writers[s].tokens,
                    "shards": self.writers[s].close()} for s in SPLITS}


def boundary_ids(tok: Tokenizer, add_bos: bool = True, add_eos: bool = True) -> tuple[int | None, int | None]:
    """(bos, eos) ids to put around each document; EOS is dropped when it is the same token as BOS."""
    bos = tok.bos_id if add_bos else None
    eos = tok.eos_id if add_eos else None
    if bos is not None and bos == eos:
        eos = None  # GPT-2 style: one <|endoftext|> between documents, not two
    if bos is None and eos is None and (add_bos or add_eos):
        raise DataError(f"the tokenizer ({tok!r}) has no BOS or EOS token to mark document boundaries",
                        "use a tokenizer with <|endoftext|>/BOS/EOS, or pass add_bos=False, add_eos=False")
    return bos, eos


def _check_out_dir(out: Path) -> None:
    # atomic_write_dir replaces `out` wholesale: never let that happen to a directory we did not write.
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / INDEX).is_file())):
        raise DataError(f"output {str(out)!r} exists and is not a prepared data directory",
                        "pass a new or empty directory with --out (an old data dir is replaced)")


def _without(source: Source, out: Path) -> Source:
    """``source``, or a copy of it that excludes ``out`` if ``out`` lies inside the directory it walks."""
    if isinstance(source, Directory) and out.resolve().is_relative_to(source.root.resolve()):
        source = copy.copy(source)
        source.exclude = [*source.exclude, out.resolve().relative_to(source.root.resolve()).as_posix()]
    return source


def prepare(sources: Source | Iterable[Source], tokenizer: Tokenizer, out_dir: str | os.PathLike, *,
            val_fraction: float = DEFAULT_VAL_FRACTION, shard_tokens: int = DEFAULT_SHARD_TOKENS,
            add_bos: bool = True, add_eos: bool = True, max_bytes: int | None = None,
            num_threads: int = 1, progress: bool = True, batch_bytes: int = BATCH_BYTES) -> dict[str, Any]:
    """Tokenize ``sources`` into ``out_dir`` (train/val shards + index.json + tokenizer/); returns the index."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction} is outside [0, 1)", "use e.g. 0.005 (0.5% of documents)")
    if shard_tokens <= 0:
        raise DataError(f"shard_tokens={shard_tokens} must be positive", f"use e.g. {DEFAULT_SHARD_TOKENS}")
    sources = [sources] if isinstance(sources, Source) else list(sources)
    out = Path(out_dir).expanduser().absolute()
    recover_dir(out)  # a crash between atomic_write_dir's two renames left the previous version aside
    _check_out_dir(out)
    sources = [_without(s, out) for s in sources]  # never read our own output back in as corpus text
    dtype = token_dtype(tokenizer.vocab_size)
    bos, eos = boundary_ids(tokenizer, add_bos, add_eos)
    index: dict[str, Any] = {
        "format": FORMAT, "kind": KIND, "dtype": dtype.name, "byteorder": "little",
        "vocab_size": tokenizer.vocab_size,
        "tokenizer": {"dir": TOKENIZER_DIR, "sha256": tokenizer_fingerprint(tokenizer),
                      "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id},
        "boundary": {"bos_id": bos, "eos_id": eos},
        "split": {"val_fraction": val_fraction, "rule": SPLIT_RULE, "forced_last_doc_to_val": False},
        "shard_tokens": shard_tokens, "max_bytes": max_bytes,
        "sources": [s.describe() for s in sources],
    }

    def fill(tmp: Path) -> None:
        tokenizer.save(tmp / TOKENIZER_DIR)
        run = _Prepare(tokenizer, tmp, dtype, shard_tokens, val_fraction, bos, eos, num_threads)
        _stream(run, iter_documents(sources, max_bytes), batch_bytes, max_bytes, progress)
        index["splits"] = run.close()
        index["split"]["forced_last_doc_to_val"] = run.forced_val
        index["skipped"] = {k: sum(s.skipped[k] for s in sources) for k in ("binary", "undecodable")}
        index["totals"] = {k: sum(index["splits"][s][k] for s in SPLITS) for k in ("docs", "bytes", "tokens")}
        (tmp / INDEX).write_text(json.dumps(index, indent=2, ensure_ascii=False), encoding="utf-8")

    atomic_write_dir(out, fill)
    return index


def _stream(run: _Prepare, docs: Iterator[str], batch_bytes: int, max_bytes: int | None, progress: bool) -> None:
    from tqdm.auto import tqdm

    start = time.perf_counter()
    n_docs = 0
    with tqdm(total=max_bytes, unit="B", unit_scale=True, desc="prepare", disable=not progress,
              dynamic_ncols=True, smoothing=0.1, mininterval=0.5) as bar:
        for texts, raw, last in _batches(docs, batch_bytes):
            run.add_batch(texts, raw, last)
            n_docs += len(texts)
            rate = n_docs / max(time.perf_counter() - start, 1e-9)
            bar.update(sum(len(b) for b in raw))
            bar.set_postfix(docs=n_docs, docs_s=f"{rate:.0f}", tokens=sum(w.tokens for w in run.writers.values()),
                            refresh=False)


def prepare_data(inputs: Sequence[str | os.PathLike] = (), out: str | os.PathLike = "data/stdlib", *,
                 tokenizer: str | os.PathLike | Tokenizer = "smollm2", field: str = "text",
                 include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
                 errors: Errors = "strict", val_fraction: float = DEFAULT_VAL_FRACTION,
                 max_bytes: int | None = None, shard_tokens: int = DEFAULT_SHARD_TOKENS,
                 num_threads: int = 1, progress: bool = True) -> dict[str, Any]:
    """``llmkit data prepare`` as a function: resolve inputs and tokenizer, prepare, time it.

    With no ``inputs`` the embedded stdlib corpus is used. Returns the index
    plus ``"seconds"`` and ``"out"`` (not written to index.json).
    """
    from llmkit.data.tokenizer_spec import resolve_tokenizer

    tok = resolve_tokenizer(tokenizer)
    sources = [source_for(p, field=field, include=include, exclude=exclude, errors=errors) for p in inputs] \
        if inputs else [StdlibSource()]
    start = time.perf_counter()
    index = prepare(sources, tok, out, val_fraction=val_fraction, shard_tokens=shard_tokens,
                    max_bytes=max_bytes, num_threads=num_threads, progress=progress)
    return {**index, "seconds": time.perf_counter() - start, "out": str(Path(out).expanduser().absolute())}

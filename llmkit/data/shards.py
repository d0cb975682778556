"""The on-disk layout of a prepared data directory, shared by ``prepare`` and the loader.

::

    out/
      index.json               format, dtype, vocab, tokenizer fingerprint, splits, counts
      tokenizer/               tokenizer.json + tokenizer_config.json (the dir is self-describing)
      train_000000.bin ...     raw little-endian token ids, no header: np.memmap-able
      val_000000.bin ...

Each split is one token stream cut into shards of at most ``shard_tokens``
ids; the loader glues the shards back together, so a training window may
span two shards. Documents are separated in the stream by the boundary
tokens named in the index (BOS before, EOS after each document).
"""

from __future__ import annotations

import hashlib
import json
import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from llmkit.data.errors import DataError

FORMAT = 1  # bump on an incompatible change and teach upgrade_index() the old one
KIND = "llmkit-token-shards"
INDEX = "index.json"
TOKENIZER_DIR = "tokenizer"
SPLITS = ("train", "val")


def token_dtype(vocab_size: int) -> np.dtype:
    """Smallest unsigned little-endian dtype that holds every id: uint16 up to 65536 tokens, else uint32."""
    if vocab_size <= 0:
        raise DataError(f"vocab_size={vocab_size} must be positive", "pass a real tokenizer")
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tokenizer_fingerprint(tok) -> str:
    """sha256 of everything that decides the ids: vocab, merges, pre-tokenizer, specials, BOS/EOS.

    The trainer can compare it with ``index["tokenizer"]["sha256"]`` to refuse
    data that was tokenized for another vocabulary. Memoized per tokenizer
    object (serializing a 50k vocab takes a noticeable fraction of a second);
    nothing that decides the ids changes after a Tokenizer is built.
    """
    cached = _FINGERPRINTS.get(tok)
    if cached is not None:
        return cached
    from llmkit.tokenizer.hf_json import to_tokenizer_json

    payload = {"tokenizer.json": to_tokenizer_json(tok),
               "ids": [tok.bos_id, tok.eos_id, tok.pad_id, tok.unk_id]}
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
    _FINGERPRINTS[tok] = digest = hashlib.sha256(blob).hexdigest()
    return digest


def shard_name(split: str, i: int) -> str:
    return f"{split}_{i:06d}.bin"


class ShardWriter:
    """Append token ids to ``<split>_NNNNNN.bin`` files of at most ``shard_tokens`` ids each."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype, shard_tokens: int):
        assert shard_tokens > 0
        self.directory, self.split, self.dtype, self.shard_tokens = Path(directory), split, dtype, shard_tokens
        self.shards: list[dict[str, Any]] = []
        self._file = None
        self.tokens = 0

    def write(self, ids: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=self.dtype)  # dtype is explicitly little-endian
        while ids.size:
            if self._file is None or self.shards[-1]["tokens"] == self.shard_tokens:
                self._roll()
            room = self.shard_tokens - self.shards[-1]["tokens"]
            head, ids = ids[:room], ids[room:]
            self._file.write(head.tobytes())
            self.shards[-1]["tokens"] += int(head.size)
            self.tokens += int(head.size)

    def _roll(self) -> None:
        if self._file is not None:
            self._file.close()
        name = shard_name(self.split, len(self.shards))
        self._file = open(self.directory / name, "wb")
        self.shards.append({"file": name, "tokens": 0})

    def close(self) -> list[dict[str, Any]]:
        if self._file is not None:
            self._file.close()
            self._file = None
        return self.shards


def upgrade_index(index: dict[str, Any], where: str) -> dict[str, Any]:
    """Bring an index of an older format up to FORMAT (there is only format 1 so far)."""
    fmt = index.get("format")
    if index.get("kind") != KIND or not isinstance(fmt, int):
        raise DataError(f"{where} is not an llmkit token-shard index", "prepare the data with `llmkit data prepare`")
    if fmt > FORMAT:
        raise DataError(f"{where} has format {fmt}, newer than this llmkit reads ({FORMAT})", "upgrade llmkit")
    return index


def read_index(data_dir: str | os.PathLike, check_files: bool = True) -> dict[str, Any]:
    """Load and validate ``index.json``; with ``check_files`` every shard must have its recorded size."""
    data_dir = Path(data_dir)
    path = data_dir / INDEX
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{str(data_dir)!r} is not a prepared data directory (no {INDEX})",
                        "create it with `llmkit data prepare --out DIR`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{str(path)!r} is not valid JSON ({e})", "prepare the data again") from None
    index = upgrade_index(index, str(path))
    if check_files:
        itemsize = np.dtype(index["dtype"]).itemsize
        for split in index["splits"].values():
            for shard in split["shards"]:
                f = data_dir / shard["file"]
                want = shard["tokens"] * itemsize
                have = f.stat().st_size if f.is_file() else None
                if have != want:
                    raise DataError(f"shard {str(f)!r} is {'missing' if have is None else f'{have} bytes'}, "
                                    f"the index says {want} bytes", "prepare the data again")
    return index

"""Turn what a user types after ``--tokenizer`` into a Tokenizer.

    resolve_tokenizer("smollm2")            # the packaged SmolLM2 GGUF's vocabulary
    resolve_tokenizer("gpt2")               # GPT-2 ranks (r50k), if installed
    resolve_tokenizer("model.gguf")         # any byte-level-BPE GGUF
    resolve_tokenizer("runs/x/ckpt")        # a dir with tokenizer.json: llmkit checkpoint, HF model, saved tokenizer
    resolve_tokenizer("data/stdlib")        # a prepared data dir (its tokenizer/ copy)
    resolve_tokenizer("ranks.tiktoken")     # a tiktoken rank file

Only the tokenizer is read: a GGUF's metadata, never its weights, and no
model code runs (data never sees the model).
"""

from __future__ import annotations

import os
from pathlib import Path

from llmkit.core.assets import ASSETS, asset_path, gpt2_ranks_path
from llmkit.core.errors import ModelNotFoundError
from llmkit.tokenizer import Tokenizer

PACKAGED_TOKENIZERS = (*ASSETS, "gpt2")


def _from_gguf(path: Path) -> Tokenizer:
    from llmkit.formats.gguf_import import tokenizer_from_metadata
    from llmkit.formats.gguf_reader import read_gguf

    return tokenizer_from_metadata(read_gguf(path).metadata)


def resolve_tokenizer(spec: str | os.PathLike | Tokenizer = "smollm2") -> Tokenizer:
    """A Tokenizer from a packaged name, a .gguf, a .tiktoken file or a directory holding tokenizer.json."""
    if isinstance(spec, Tokenizer):
        return spec
    s = str(spec)
    if s in ASSETS:
        return _from_gguf(asset_path(s))
    if s == "gpt2":
        return Tokenizer.from_tiktoken_file(gpt2_ranks_path())
    path = Path(s).expanduser()
    if path.is_dir():
        for d in (path, path / "tokenizer"):
            if (d / "tokenizer.json").is_file():
                return Tokenizer.load(d)
        raise ModelNotFoundError(f"{s!r} holds no tokenizer.json",
                                 "pass a tokenizer/checkpoint/HF directory, a .gguf, or a packaged name: "
                                 + ", ".join(PACKAGED_TOKENIZERS))
    if path.is_file():
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic == b"GGUF":
            return _from_gguf(path)
        if path.suffix == ".tiktoken":
            return Tokenizer.from_tiktoken_file(path)
        if path.name == "tokenizer.json":
            return Tokenizer.load(path.parent)
    raise ModelNotFoundError(f"tokenizer {s!r} not found",
                             "pass a tokenizer/checkpoint/HF directory, a .gguf or .tiktoken file, "
                             "or a packaged name: " + ", ".join(PACKAGED_TOKENIZERS))

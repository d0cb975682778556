"""Parents of a merge, read one tensor at a time.

An llmkit checkpoint (and a GGUF, through its cached conversion) is opened with
safetensors' lazy reader: ``get(name)`` maps one tensor, so merging N models
holds the output plus one tensor per parent, not N whole models. A Hugging Face
directory is converted in memory (its tensor names and GPT-2's fused QKV need
the whole state dict), which is the one case that is not streamed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from llmkit.core import checkpoint as ckpt
from llmkit.core.errors import ConfigError
from llmkit.formats.loader import gguf_checkpoint, load_checkpoint_model, resolve
from llmkit.merge.config import MergeError
from llmkit.model import ModelConfig, Transformer
from llmkit.tokenizer import Tokenizer

# config fields that do not change what the weights mean: parents may differ in them
FREE_FIELDS = {"max_seq_len", "dropout", "init_std"}


def expected_names(cfg: ModelConfig) -> list[str]:
    """Tensor names of a model with this config, in model order (a tied head is not stored)."""
    return list(Transformer(cfg, device="meta").export_state_dict())


def file_sha256(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


@dataclass
class ModelSource:
    """One parent: its config, tokenizer, lineage meta and a tensor reader."""

    spec: str  # as written in the config
    path: Path
    kind: str  # "llmkit", "gguf" or "hf"
    config: ModelConfig
    tokenizer: Tokenizer
    meta: dict[str, Any]
    weight_files: list[Path]
    _lazy: Any = None
    _tensors: dict[str, torch.Tensor] | None = None
    names: list[str] = field(default_factory=list)
    _sha: str | None = None

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.path.stem)

    def get(self, name: str) -> torch.Tensor:
        if self._tensors is not None:
            return self._tensors[name]
        return self._lazy.get_tensor(name)

    def sha256(self) -> str:
        if self._sha is None:
            self._sha = file_sha256(self.weight_files)
        return self._sha

    def lineage_entry(self) -> dict[str, Any]:
        return {"model": self.spec, "path": str(self.path.resolve()), "kind": self.kind, "name": self.name,
                "sha256": self.sha256()}


def _open_checkpoint(spec: str, path: Path, kind: str, weight_files: list[Path], ckpt_dir: Path) -> ModelSource:
    meta = ckpt.upgrade_meta(ckpt.read_json(ckpt_dir / ckpt.META))
    try:
        cfg = ModelConfig.from_dict(ckpt.read_json(ckpt_dir / ckpt.CONFIG))
    except (ConfigError, TypeError) as e:
        raise MergeError(f"config.json of {spec!r} is not a valid ModelConfig ({e})", "re-create the checkpoint") from e
    if not (ckpt_dir / "tokenizer.json").is_file():
        raise MergeError(f"{spec!r} has no tokenizer.json", "copy the tokenizer files next to the weights")
    lazy = safe_open(str(ckpt_dir / ckpt.WEIGHTS), framework="pt")
    src = ModelSource(spec, path, kind, cfg, Tokenizer.load(ckpt_dir), meta, weight_files, _lazy=lazy)
    src.names = expected_names(cfg)
    missing = [n for n in src.names if n not in set(lazy.keys())]
    if missing:
        raise MergeError(f"{spec!r} lacks tensor {missing[0]!r} its config needs", "the checkpoint is incomplete")
    return src


def open_source(spec: str) -> ModelSource:
    """Open any model the loader accepts (packaged name, GGUF, llmkit checkpoint, HF dir)."""
    path, kind = resolve(spec)
    if kind == "llmkit":
        return _open_checkpoint(spec, path, kind, [path / ckpt.WEIGHTS], path)
    if kind == "gguf":
        cached = gguf_checkpoint(path)
        if cached is not None:
            src = _open_checkpoint(spec, path, kind, [path], cached)
            src.meta = {**src.meta, "name": src.meta.get("name") or path.stem}
            return src
    cfg, sd, tok, meta = _load_whole(path, kind)
    if tok is None:
        raise MergeError(f"{spec!r} has no tokenizer", "copy the tokenizer files next to the weights")
    files = (sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))) if path.is_dir() else [path]
    src = ModelSource(spec, path, kind, cfg, tok, meta, files, _tensors=sd)
    src.names = expected_names(cfg)
    return src


def _load_whole(path: Path, kind: str):
    if kind == "gguf":  # only when the conversion cache is not writable
        from llmkit.formats.gguf_import import load_gguf

        cfg, sd, tok = load_gguf(path)
        return cfg, sd, tok, {"name": path.stem, "source_format": "gguf"}
    if kind == "hf":
        from llmkit.formats.hf import load_hf

        cfg, sd, tok = load_hf(path)
        return cfg, sd, tok, {"name": path.name, "source_format": "hf"}
    cfg, sd, tok, meta = load_checkpoint_model(path)
    return cfg, sd, tok, meta


# ---- compatibility ------------------------------------------------------------------------------
def arch_fields(cfg: ModelConfig, ignore_layers: bool = False) -> dict[str, Any]:
    d = {k: v for k, v in cfg.to_dict().items() if k not in FREE_FIELDS}
    if ignore_layers:
        d.pop("n_layer")
    return d


def check_compatible(base: ModelSource, others: list[ModelSource], ignore_layers: bool = False) -> None:
    """Same architecture (every shape-defining config field) and the same tokenizer, or a one-line error."""
    want = arch_fields(base.config, ignore_layers)
    for o in others:
        got = arch_fields(o.config, ignore_layers)
        for key in want:
            if want[key] != got.get(key):
                raise MergeError(f"architectures differ: {o.spec!r} has {key}={got.get(key)!r} but "
                                 f"{base.spec!r} has {key}={want[key]!r}",
                                 "merge models of one architecture (fine-tunes of the same base)"
                                 + ("" if ignore_layers or key != "n_layer" else "; stack layers with passthrough"))
        mismatch = tokenizer_mismatch(base.tokenizer, o.tokenizer)
        if mismatch:
            raise MergeError(f"tokenizers differ: {o.spec!r} vs {base.spec!r} ({mismatch})",
                             "merge models that share one tokenizer (token ids must mean the same thing)")


def tokenizer_mismatch(a: Tokenizer, b: Tokenizer) -> str | None:
    """Why two tokenizers map ids differently, or None when they agree."""
    if a.vocab_size != b.vocab_size:
        return f"vocab size {b.vocab_size} vs {a.vocab_size}"
    if a.tokens != b.tokens:
        i = next(i for i, (x, y) in enumerate(zip(a.tokens, b.tokens)) if x != y)
        return f"token {i} is {b.tokens[i]!r} vs {a.tokens[i]!r}"
    if a.special_tokens != b.special_tokens:
        return "special tokens differ"
    if a.merge_ids() != b.merge_ids():
        return "BPE merges differ"
    return None

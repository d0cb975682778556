"""One entry point to get a runnable model from anything a user can name.

    lm = load_model("smollm2")                 # the packaged SmolLM2-135M-Instruct
    lm = load_model("path/to/model.gguf")      # any supported GGUF
    lm = load_model("runs/x/ckpt")             # an llmkit checkpoint
    lm = load_model("path/to/hf-model-dir")    # a Hugging Face directory

A GGUF is converted once and cached as an llmkit checkpoint (keyed by the
file's path, size and mtime), so the second start only maps safetensors.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from llmkit.core import checkpoint as ckpt
from llmkit.core.assets import ASSETS, asset_path, cache_dir
from llmkit.core.errors import CheckpointError, ConfigError, FormatError, ModelNotFoundError
from llmkit.core.runtime import resolve_device, resolve_dtype
from llmkit.model import ModelConfig, Transformer

if TYPE_CHECKING:
    from llmkit.tokenizer import Tokenizer

CONVERTER_VERSION = 1  # bump to invalidate cached GGUF conversions


@dataclass
class LoadedModel:
    model: Transformer
    tokenizer: Tokenizer
    config: ModelConfig
    source: str  # what the user asked for
    path: Path  # the file or directory it came from
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.meta.get("name") or self.path.stem


def detect_kind(path: Path) -> str:
    """'gguf', 'llmkit' or 'hf' for an existing path; raises ModelNotFoundError otherwise."""
    if path.is_file():
        with open(path, "rb") as f:
            if f.read(4) == b"GGUF":
                return "gguf"
        raise FormatError(f"{str(path)!r} is not a GGUF file (bad magic bytes)",
                          "pass a .gguf file, an llmkit checkpoint directory or a Hugging Face directory")
    if path.is_dir():
        if (path / ckpt.META).is_file():
            return "llmkit"
        if (path / "config.json").is_file():
            return "hf"
        raise ModelNotFoundError(f"{str(path)!r} holds no model (no meta.json or config.json)",
                                 "point at a checkpoint written by llmkit or a Hugging Face model directory")
    raise ModelNotFoundError(f"model {str(path)!r} not found",
                             f"pass a path, or a packaged name: {', '.join(ASSETS)}")


def resolve(spec: str | os.PathLike) -> tuple[Path, str]:
    """Map a model spec to (path, kind). Packaged names win over relative paths."""
    s = str(spec)
    if s in ASSETS:
        return asset_path(s), "gguf"
    path = Path(s).expanduser()
    return path, detect_kind(path)


def _gguf_cache_path(path: Path) -> Path:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{ckpt.FORMAT}|{CONVERTER_VERSION}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir() / "models" / f"{path.stem}-{digest}"


def save_model(path: str | os.PathLike, model: Transformer, tokenizer: Tokenizer | None,
               meta: dict[str, Any] | None = None) -> Path:
    """Write an llmkit checkpoint: weights (tied stored once), config, tokenizer, meta."""
    files: dict[str, bytes] = {}
    if tokenizer is not None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            tokenizer.save(tmp)
            files = {f.name: f.read_bytes() for f in Path(tmp).iterdir() if f.is_file()}
    return ckpt.save_checkpoint(path, model.export_state_dict(), model.cfg.to_dict(), meta, files)


def build_model(cfg: ModelConfig, tensors: dict[str, torch.Tensor], source: str,
                quantization: dict[str, Any] | None = None) -> Transformer:
    """A model on the given weights; ``quantization`` (meta.json) names the layers stored quantized."""
    try:
        if not quantization:
            return Transformer.from_state_dict(cfg, tensors)
        from llmkit.model.qlinear import quant_layer_from_spec

        model = Transformer(cfg, device="meta")
        for name, spec in quantization["layers"].items():
            old = model.get_submodule(name)
            model.set_submodule(name, quant_layer_from_spec(spec, old.in_features, old.out_features,
                                                            old.bias is not None, device="meta"))
        model.load_weights(tensors, assign=True)
        return model.eval()
    except (KeyError, RuntimeError, AttributeError) as e:
        raise FormatError(f"weights in {source!r} do not match the model config ({e})",
                          "the checkpoint is corrupted or was written by another tool") from e


def load_checkpoint_model(path: Path) -> tuple[ModelConfig, dict[str, torch.Tensor], Tokenizer | None, dict]:
    c = ckpt.load_checkpoint(path)
    try:
        cfg = ModelConfig.from_dict(c.config)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"config.json in {str(path)!r} is not a valid ModelConfig: {e}",
                              "re-create the checkpoint") from e
    tok = None
    if (path / "tokenizer.json").is_file():
        from llmkit.tokenizer import Tokenizer

        tok = Tokenizer.load(path)
    return cfg, c.tensors, tok, c.meta


def _load_gguf_cached(path: Path, use_cache: bool) -> tuple[ModelConfig, dict, Tokenizer, dict]:
    cached = _gguf_cache_path(path)
    if use_cache and ckpt.is_checkpoint(cached):
        try:
            cfg, sd, tok, meta = load_checkpoint_model(cached)
            if tok is not None:
                return cfg, sd, tok, meta
        except (CheckpointError, FormatError):
            pass  # a damaged cache is rebuilt below
    from llmkit.formats.gguf_import import load_gguf

    cfg, sd, tok = load_gguf(path)
    meta = {"stage": "import", "parent": str(path.resolve()), "source_format": "gguf", "name": path.stem}
    if use_cache:
        try:
            tmp_model = build_model(cfg, sd, str(path))
            save_model(cached, tmp_model, tok, meta)
        except (OSError, CheckpointError):
            pass  # a read-only cache only costs speed
    return cfg, sd, tok, meta


def load_model(spec: str | os.PathLike = "smollm2", device: str | None = "auto",
               dtype: str | torch.dtype | None = "auto", use_cache: bool = True,
               keep_quantized: bool = False) -> LoadedModel:
    """Load a model and its tokenizer from a packaged name, GGUF, checkpoint or HF directory.

    ``keep_quantized`` (GGUF only): run Q8_0/Q4_0/Q4_1/Q4_K weights packed instead of in float32.
    """
    path, kind = resolve(spec)
    if kind == "gguf" and keep_quantized:
        from llmkit.formats.gguf_packed import load_gguf_packed

        cfg, sd, tok, quant = load_gguf_packed(path)
        meta = {"stage": "import", "parent": str(path.resolve()), "source_format": "gguf", "name": path.stem,
                "quantization": quant}
    elif kind == "gguf":
        cfg, sd, tok, meta = _load_gguf_cached(path, use_cache)
    elif kind == "llmkit":
        cfg, sd, tok, meta = load_checkpoint_model(path)
    else:
        from llmkit.formats.hf import load_hf

        cfg, sd, tok = load_hf(path)
        meta = {"stage": "import", "parent": str(path.resolve()), "source_format": "hf", "name": path.name}
    if tok is None:
        raise FormatError(f"{str(path)!r} has no tokenizer (tokenizer.json)", "copy the tokenizer files next to the weights")
    model = build_model(cfg, sd, str(spec), meta.get("quantization"))
    dev = resolve_device(device)
    model = model.to(device=dev, dtype=resolve_dtype(dtype, dev))
    return LoadedModel(model=model, tokenizer=tok, config=cfg, source=str(spec), path=path, meta=meta)


def gguf_checkpoint(path: str | os.PathLike) -> Path | None:
    """The cached llmkit checkpoint of a GGUF (converted now if missing); None if the cache is not writable.

    Lets tools that stream tensors (merging) read a GGUF through safetensors' lazy reader.
    """
    path = Path(path)
    cached = _gguf_cache_path(path)
    if not ckpt.is_checkpoint(cached):
        _load_gguf_cached(path, use_cache=True)
    return cached if ckpt.is_checkpoint(cached) else None

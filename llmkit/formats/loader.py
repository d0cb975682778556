"""One entry point to get a runnable model from anything a user can name.

    lm = load_model("smollm2")                 # the packaged SmolLM2-135M-Instruct
    lm = load_model("path/to/model.gguf")      # any supported GGUF
    lm = load_model("runs/x/ckpt")             # an llmkit checkpoint
    lm = load_model("path/to/hf-model-dir")    # a Hugging Face directory

A GGUF is converted once and cached as an llmkit checkpoint (keyed by the
file's path, size and mtime), so the second start only maps safetensors.

    lm = load_model("smollm2", convert_linear=lambda name, lin: NF4Linear.from_linear(lin))

``convert_linear`` replaces each Linear of the blocks as soon as its weights
are read, before the next one is: the float copy of one layer is all that
ever exists, which is how QLoRA's NF4 base loads.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch
from torch import nn

from llmkit.core import checkpoint as ckpt
from llmkit.core.assets import ASSETS, asset_path, cache_dir
from llmkit.core.errors import CheckpointError, ConfigError, FormatError, ModelNotFoundError
from llmkit.core.runtime import resolve_device, resolve_dtype
from llmkit.model import ModelConfig, Transformer

if TYPE_CHECKING:
    from llmkit.tokenizer import Tokenizer

CONVERTER_VERSION = 1  # bump to invalidate cached GGUF conversions
ConvertLinear = Callable[[str, nn.Linear], "nn.Module | None"]  # (name, placed Linear) -> its replacement, or None


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


def build_model(cfg: ModelConfig, tensors: Mapping[str, torch.Tensor], source: str,
                quantization: dict[str, Any] | None = None, convert_linear: ConvertLinear | None = None,
                device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> Transformer:
    """A model on the given weights; ``quantization`` (meta.json) names the layers stored quantized.

    With ``convert_linear`` the blocks' Linears are read one at a time, moved to ``device`` and
    ``dtype`` and handed to it (see ``_convert_linears``); the rest of the model is not moved here.
    """
    try:
        if not quantization and convert_linear is None:
            return Transformer.from_state_dict(cfg, tensors)
        from llmkit.model.qlinear import quant_layer_from_spec

        model = Transformer(cfg, device="meta")
        for name, spec in (quantization or {}).get("layers", {}).items():
            old = model.get_submodule(name)
            model.set_submodule(name, quant_layer_from_spec(spec, old.in_features, old.out_features,
                                                            old.bias is not None, device="meta"))
        if convert_linear is None:
            model.load_weights(tensors, assign=True)
            return model.eval()
        rest = _convert_linears(model, tensors, convert_linear, device, dtype)
        model.load_weights(rest, strict=False, assign=True)
        unread = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        unexpected = sorted(set(rest) - set(model.state_dict()))
        if unread or unexpected:
            raise KeyError(f"missing={unread[:5]} unexpected={unexpected[:5]}")
        return model.eval()
    except (KeyError, RuntimeError, AttributeError) as e:
        raise FormatError(f"weights in {source!r} do not match the model config ({e})",
                          "the checkpoint is corrupted or was written by another tool") from e


def _convert_linears(model: Transformer, tensors: Mapping[str, torch.Tensor], convert: ConvertLinear,
                     device: torch.device | str, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Fill, place and convert the blocks' Linears of a meta-device ``model`` in order; the unread tensors.

    A dict of tensors is emptied as it is read, so a converted layer's float weight is freed at
    once (with LazyTensors it was never held anywhere else).
    """
    take = tensors.pop if isinstance(tensors, dict) else tensors.__getitem__
    read: set[str] = set()
    names = [n for n, m in model.named_modules() if n.startswith("blocks.") and isinstance(m, nn.Linear)]
    for name in names:  # names, not modules: a list of the Linears would keep every float weight alive
        lin = model.get_submodule(name)
        keys = [k for k, _ in lin.named_parameters()]  # weight (, bias)
        lin.load_state_dict({k: take(f"{name}.{k}") for k in keys}, assign=True)
        read.update(f"{name}.{k}" for k in keys)
        new = convert(name, lin.to(device=device, dtype=dtype))
        if new is not None:
            model.set_submodule(name, new)
        del lin, new  # the Linear (and its float weight) must not outlive this iteration
    return {k: take(k) for k in list(tensors) if k not in read}


def load_checkpoint_model(path: Path, lazy: bool = False) -> tuple[ModelConfig, Mapping[str, torch.Tensor],
                                                                   Tokenizer | None, dict]:
    """(config, tensors, tokenizer, meta) of a checkpoint; ``lazy``: tensors read on access (LazyTensors)."""
    c = ckpt.load_checkpoint(path, lazy=lazy)
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


def _load_gguf_cached(path: Path, use_cache: bool, lazy: bool = False) -> tuple[ModelConfig, Mapping, Tokenizer, dict]:
    cached = _gguf_cache_path(path)
    if use_cache and ckpt.is_checkpoint(cached):
        try:
            cfg, sd, tok, meta = load_checkpoint_model(cached, lazy)
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


WEIGHTS = {"auto": "auto", "packed": True, "float": False}  # --weights choice -> keep_quantized


def packed_by_default(device: str | None, dtype: str | torch.dtype | None) -> bool:
    """Whether a quantized GGUF should run on its packed blocks: on a CPU in float32, where the
    quantized kernels decode several times faster than float weights (docs/benchmarks.md). On a GPU,
    or in bf16/fp16, the weights are expanded once instead."""
    dev = resolve_device(device)
    return dev.type == "cpu" and resolve_dtype(dtype, dev) == torch.float32


def keep_quantized_for(weights: str) -> bool | str:
    """The ``keep_quantized`` argument for a ``--weights`` choice: auto, packed or float."""
    if weights not in WEIGHTS:
        raise ConfigError(f"unknown weights choice {weights!r}", f"choose one of: {', '.join(WEIGHTS)}")
    return WEIGHTS[weights]


def load_model(spec: str | os.PathLike = "smollm2", device: str | None = "auto",
               dtype: str | torch.dtype | None = "auto", use_cache: bool = True,
               keep_quantized: bool | str = False, convert_linear: ConvertLinear | None = None) -> LoadedModel:
    """Load a model and its tokenizer from a packaged name, GGUF, checkpoint or HF directory.

    ``keep_quantized`` (GGUF only): run Q8_0/Q4_0/Q4_1/Q4_K weights packed instead of in float32.
    ``"auto"`` keeps them packed where that is the fast path: on a CPU in float32 (see
    ``packed_by_default``). Training and evaluation load float weights; generation verbs use "auto".
    ``convert_linear(name, linear)``: called for each Linear of the blocks once its weights are read
    and placed on ``device`` in ``dtype``; a module it returns takes the Linear's place. Checkpoints,
    cached GGUFs and HF safetensors are then read tensor by tensor into memory of their own, so the
    float weights of converted layers never all exist at once (a GGUF's first, uncached conversion
    and a pytorch_model.bin are still read whole first).
    """
    path, kind = resolve(spec)
    lazy = convert_linear is not None
    if keep_quantized == "auto":
        keep_quantized = packed_by_default(device, dtype)
    if kind == "gguf" and keep_quantized:
        from llmkit.formats.gguf_packed import load_gguf_packed

        cfg, sd, tok, quant = load_gguf_packed(path)
        meta = {"stage": "import", "parent": str(path.resolve()), "source_format": "gguf", "name": path.stem,
                "quantization": quant}
    elif kind == "gguf":
        cfg, sd, tok, meta = _load_gguf_cached(path, use_cache, lazy)
    elif kind == "llmkit":
        cfg, sd, tok, meta = load_checkpoint_model(path, lazy)
    else:
        from llmkit.formats.hf import load_hf

        cfg, sd, tok = load_hf(path, lazy)
        meta = {"stage": "import", "parent": str(path.resolve()), "source_format": "hf", "name": path.name}
    if tok is None:
        raise FormatError(f"{str(path)!r} has no tokenizer (tokenizer.json)", "copy the tokenizer files next to the weights")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    model = build_model(cfg, sd, str(spec), meta.get("quantization"), convert_linear, dev, dt)
    del sd  # emptied by a converting build; otherwise the model's own tensors
    model = model.to(device=dev, dtype=dt)
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

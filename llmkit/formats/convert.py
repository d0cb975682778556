"""`llmkit convert SRC DST` and `llmkit info MODEL` as typed functions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llmkit.core.errors import ConfigError
from llmkit.formats.hf import save_hf
from llmkit.formats.loader import load_model, resolve, save_model

TARGETS = ("llmkit", "hf", "gguf")


def convert(src: str, dst: str | os.PathLike, to: str = "llmkit", dtype: str = "float32",
            outtype: str = "f16") -> Path:
    """Convert a GGUF, llmkit checkpoint or HF directory into an llmkit checkpoint, an HF directory or a GGUF.

    ``outtype`` (GGUF only): f32, f16, bf16, q8_0, q4_0 or q4_1.
    """
    if to not in TARGETS:
        raise ConfigError(f"unknown conversion target {to!r}", f"choose one of: {', '.join(TARGETS)}")
    lm = load_model(src, device="cpu", dtype=dtype, use_cache=False)
    if Path(dst).resolve() == lm.path.resolve():
        raise ConfigError(f"destination {str(dst)!r} is the source", "write to a new directory")
    if to == "hf":
        return save_hf(dst, *float_weights(lm.model), lm.tokenizer)
    if to == "gguf":
        from llmkit.formats.gguf_export import save_gguf

        return save_gguf(dst, *float_weights(lm.model), lm.tokenizer, outtype, name=lm.name)
    meta = {"stage": lm.meta.get("stage", "import"), "parent": str(lm.path.resolve()),
            "source_format": lm.meta.get("source_format", "llmkit"), "name": lm.name,
            "lineage": list(lm.meta.get("lineage", [])) + [{"op": "convert", "from": str(lm.path.resolve())}]}
    return save_model(dst, lm.model, lm.tokenizer, meta)


def float_weights(model) -> tuple:
    """(config, state dict) with every quantized layer (QuantLinear, NF4Linear) as a dense float weight.

    Other formats store float (or their own block) weights, so a quantized
    checkpoint is exported through its dequantized values. A quantized head is
    no longer the embedding, so a tied model is written untied.
    """
    from llmkit.model.qlinear import NF4Linear, QuantLinear

    cfg, sd = model.cfg, model.export_state_dict()
    for name, mod in model.named_modules():
        if isinstance(mod, (QuantLinear, NF4Linear)):
            for key in [k for k in sd if k.startswith(f"{name}.")]:
                del sd[key]
            sd[f"{name}.weight"] = mod.dequantize()
            if mod.bias is not None:
                sd[f"{name}.bias"] = mod.bias.float()
            if name == "lm_head" and cfg.tie_embeddings:
                cfg = cfg.replace(tie_embeddings=False)
    return cfg, sd


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _arch_fields(cfg) -> dict[str, Any]:
    return {"arch": cfg.arch, "context_length": cfg.max_seq_len, "vocab_size": cfg.vocab_size,
            "n_layer": cfg.n_layer, "d_model": cfg.d_model, "n_head": cfg.n_head, "n_kv_head": cfg.kv_heads,
            "d_ff": cfg.ff_dim, "positions": cfg.pos, "rope_theta": cfg.rope_theta if cfg.pos == "rope" else None,
            "rope_scaling": cfg.rope_scaling, "norm": cfg.norm, "mlp": cfg.mlp,
            "tied_embeddings": cfg.tie_embeddings}


def preset_info(name: str) -> dict[str, Any]:
    """Architecture and parameter count of a named preset (nothing is allocated)."""
    from llmkit.model import Transformer, preset

    cfg = preset(name)
    return {"preset": name, "parameters": Transformer(cfg, device="meta").num_params(), **_arch_fields(cfg)}


def info(model: str = "smollm2") -> dict[str, Any]:
    """Architecture, parameter count, dtype, context, chat template and size of a model."""
    path, kind = resolve(model)
    lm = load_model(model, device="cpu", dtype="auto")
    cfg = lm.config
    tmpl = lm.tokenizer.chat_template
    return {
        "model": str(model), "path": str(path), "format": kind, "file_size_bytes": _size(path),
        "parameters": lm.model.num_params(), "dtype": str(next(lm.model.parameters()).dtype).removeprefix("torch."),
        **_arch_fields(cfg), "chat_template": (tmpl[:120] + "…") if tmpl and len(tmpl) > 120 else tmpl,
        "bos_id": lm.tokenizer.bos_id, "eos_id": lm.tokenizer.eos_id,
    }

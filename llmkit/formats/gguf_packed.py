"""Run a GGUF's quantized weights as they are: Q8_0 / Q4_0 / Q4_1 / Q4_K blocks -> QuantLinear.

``load_gguf`` dequantizes every tensor to float32 (exact, and what the parity
tests compare). This module instead splits each block into the parts our
kernel reads — integer codes, one scale and one minimum per 32 values — so a
linear layer streams 4 or 8 bits per weight instead of 32. The codes and
fp16 scales are the file's own bytes, so ``layer.dequantize()`` equals the
float32 dequantization bit for bit (Q4_K's scales are products ``d * sc``,
kept in float32 to stay exact). Other types (Q5_*, Q6_K, ...) stay float32.

    Q8_0  34 B / 32: d f16 | q i8[32]       ->  q (N, K) int8, scale d,       no min
    Q4_0  18 B / 32: d f16 | q u4[32]       ->  q (N, K/2),    scale d,       min -8d
    Q4_1  20 B / 32: d f16 | m f16 | q u4   ->  q (N, K/2),    scale d,       min m
    Q4_K 144 B / 256: 8 sub-blocks of 32 with 6-bit scales/mins -> scale d*sc, min -dmin*m
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from llmkit.formats.gguf_import import (PERMUTED_ARCHS, config_from_metadata, our_name, state_dict_from_gguf,
                                        tokenizer_from_metadata, unpermute_qk)
from llmkit.formats.gguf_quants import _k4_nibbles, _k4_scales_mins, dequantize
from llmkit.formats.gguf_reader import read_gguf
from llmkit.model.config import ModelConfig
from llmkit.model.qlinear import pack_int4

if TYPE_CHECKING:
    from llmkit.tokenizer import Tokenizer

PACKED_TYPES = ("Q8_0", "Q4_0", "Q4_1", "Q4_K")


def split_blocks(raw, ggml_type: str, shape: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Packed bytes of one (N, K) tensor -> {"qweight", "scale", "min"?} in QuantLinear's layout."""
    N, K = shape
    b = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    if ggml_type == "Q8_0":
        b = b.view(N * K // 32, 34)
        return {"qweight": b[:, 2:].contiguous().view(torch.int8).reshape(N, K),
                "scale": b[:, :2].contiguous().view(torch.float16).reshape(N, K // 32)}
    if ggml_type == "Q4_0":
        b = b.view(N * K // 32, 18)
        d = b[:, :2].contiguous().view(torch.float16).reshape(N, K // 32)
        return {"qweight": b[:, 2:].reshape(N, K // 2).contiguous(), "scale": d, "min": d * -8}
    if ggml_type == "Q4_1":
        b = b.view(N * K // 32, 20)
        return {"qweight": b[:, 4:].reshape(N, K // 2).contiguous(),
                "scale": b[:, :2].contiguous().view(torch.float16).reshape(N, K // 32),
                "min": b[:, 2:4].contiguous().view(torch.float16).reshape(N, K // 32)}
    assert ggml_type == "Q4_K", ggml_type
    b = b.view(N * K // 256, 144)
    sc, m = _k4_scales_mins(b[:, 4:16])  # (n, 8) each
    d = b[:, 0:2].contiguous().view(torch.float16).float()
    dmin = b[:, 2:4].contiguous().view(torch.float16).float()
    q = _k4_nibbles(b[:, 16:144]).reshape(N, K)  # values in order, 32 per sub-block
    return {"qweight": pack_int4(q), "scale": (d * sc.float()).reshape(N, K // 32),
            "min": -(dmin * m.float()).reshape(N, K // 32)}


def _spec(parts: dict[str, torch.Tensor], ggml_type: str) -> dict[str, Any]:
    return {"kind": "affine", "bits": 8 if ggml_type == "Q8_0" else 4, "group_size": 32,
            "has_min": "min" in parts, "scale_dtype": str(parts["scale"].dtype).removeprefix("torch.")}


def _packed_layer(name: str, ours: str | None, cfg: ModelConfig) -> str | None:
    """Which of our layers a GGUF weight becomes when kept packed (None: it is not a linear weight)."""
    if name == "token_embd.weight" and cfg.tie_embeddings:
        return "lm_head"  # the tied head gets its own packed copy; the lookup table stays float
    if ours is None or not ours.endswith(".weight") or ours.startswith(("tok_emb", "pos_emb")) or "norm" in ours:
        return None
    return ours[: -len(".weight")]


def load_gguf_packed(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], Tokenizer, dict[str, Any]]:
    """(config, state dict with packed layers' qweight/scale/min, tokenizer, {"layers": {name: spec}})."""
    gf = read_gguf(path)
    cfg = config_from_metadata(gf.metadata, set(gf.tensors))
    tok = tokenizer_from_metadata(gf.metadata)
    if cfg.arch == "gpt2":  # GPT-2 files fuse q/k/v: keep the float path for them
        return cfg, state_dict_from_gguf(gf, cfg), tok, {"method": "gguf", "layers": {}}
    sd: dict[str, torch.Tensor] = {}
    layers: dict[str, dict] = {}
    for name, info in gf.tensors.items():
        ours = our_name(name)
        layer = _packed_layer(name, ours, cfg)
        permuted = cfg.arch in PERMUTED_ARCHS and (".attn_q." in name or ".attn_k." in name)
        heads = cfg.n_head if ".attn_q." in name else cfg.kv_heads
        if layer is not None and info.ggml_type in PACKED_TYPES:
            parts = split_blocks(gf.raw(name)[0], info.ggml_type, info.shape)
            if permuted:  # llama.cpp's q/k row order: rows move, blocks inside a row stay
                parts = {k: unpermute_qk(v, heads).contiguous() for k, v in parts.items()}
            sd.update({f"{layer}.{k}": v for k, v in parts.items()})
            layers[layer] = {**_spec(parts, info.ggml_type), "exact_activations": layer == "lm_head"}
            if layer != "lm_head" or not cfg.tie_embeddings:
                continue
        if ours is None:
            continue
        t = dequantize(*gf.raw(name))
        sd[ours] = unpermute_qk(t, heads) if permuted else t
    return cfg, sd, tok, {"method": "gguf", "layers": layers}

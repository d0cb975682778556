"""llmkit model → GGUF file that llama.cpp (and transformers' gguf loader) can read.

The inverse of gguf_import: our names to GGUF names, Q/K rows permuted for
llama.cpp's interleaved RoPE (llama arch only), GPT-2's q/k/v fused, the
tokenizer and chat template stored as metadata. Weights are written as F32,
F16, BF16 or block-quantized Q8_0 / Q4_0 / Q4_1 (1-D tensors stay F32, as
llama.cpp expects).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from llmkit.core.errors import ConfigError, FormatError
from llmkit.formats.gguf_import import PERMUTED_ARCHS
from llmkit.formats.gguf_quants import quantize
from llmkit.model.config import ModelConfig
from llmkit.model.rope import rope_inv_freq

OUTTYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1")
# llama.cpp's LLAMA_FTYPE numbers for general.file_type
FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "bf16": 32}
_LAYER = {"attn_norm": "attn_norm", "mlp_norm": "ffn_norm", "attn.wq": "attn_q", "attn.wk": "attn_k",
          "attn.wv": "attn_v", "attn.wo": "attn_output", "mlp.w_gate": "ffn_gate", "mlp.w_up": "ffn_up",
          "mlp.w_down": "ffn_down"}
_TOP = {"tok_emb": "token_embd", "pos_emb": "position_embd", "norm_f": "output_norm", "lm_head": "output"}


def permute_qk(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Our "rotate half" rows (h, 2, D/2) → llama.cpp's interleaved rows (h, D/2, 2)."""
    rest = w.shape[1:]
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *rest).transpose(1, 2).reshape(w.shape)


def gguf_name(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "blocks":
        return f"blk.{parts[1]}.{_LAYER['.'.join(parts[2:-1])]}.{parts[-1]}"
    return f"{_TOP[parts[0]]}.{parts[1]}"


_EXPERTS = {"w_gate": "ffn_gate_exps", "w_up": "ffn_up_exps", "w_down": "ffn_down_exps"}


def _moe_tensors(cfg: ModelConfig, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """llama.cpp's mixture of experts: the router as ffn_gate_inp, each projection stacked over experts (E, out, in)."""
    out = {}
    for i in range(cfg.n_layer):
        out[f"blk.{i}.ffn_gate_inp.weight"] = sd[f"blocks.{i}.mlp.gate.weight"].detach().float().cpu()
        for ours, theirs in _EXPERTS.items():
            out[f"blk.{i}.{theirs}.weight"] = torch.stack(
                [sd[f"blocks.{i}.mlp.experts.{e}.{ours}.weight"].detach().float().cpu() for e in range(cfg.n_expert)])
    return out


def gguf_tensors(cfg: ModelConfig, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if cfg.n_expert:
        if cfg.arch != "llama":
            raise FormatError(f"llama.cpp runs mixtures of experts in the llama architecture, not {cfg.arch!r}",
                              "merge experts from a Llama-style base")
        out.update(_moe_tensors(cfg, sd))
    for name, t in sd.items():
        if cfg.tie_embeddings and name == "lm_head.weight":
            continue
        if ".mlp.gate." in name or ".mlp.experts." in name:
            continue  # written stacked by _moe_tensors
        if cfg.arch == "gpt2" and ".attn.w" in name and name.split(".")[3] in ("wq", "wk", "wv"):
            continue
        t = t.detach().float().cpu()
        if cfg.arch in PERMUTED_ARCHS and (".attn.wq." in name or ".attn.wk." in name):
            t = permute_qk(t, cfg.n_head if ".attn.wq." in name else cfg.kv_heads)
        out[gguf_name(name)] = t
    if cfg.arch == "gpt2":
        for i in range(cfg.n_layer):
            for kind in ("weight", "bias"):
                out[f"blk.{i}.attn_qkv.{kind}"] = torch.cat(
                    [sd[f"blocks.{i}.attn.{w}.{kind}"].float() for w in ("wq", "wk", "wv")], dim=0)
    if cfg.pos == "rope" and cfg.rope_scaling == "llama3":
        base, _ = rope_inv_freq(cfg.dim_head, cfg.rope_theta)
        scaled, _ = rope_inv_freq(cfg.dim_head, cfg.rope_theta, "llama3", cfg.rope_factor,
                                  cfg.rope_original_max_seq_len, cfg.rope_low_freq_factor, cfg.rope_high_freq_factor)
        out["rope_freqs.weight"] = base / scaled  # llama.cpp divides each frequency by its factor
    return out


def _add_config(w, cfg: ModelConfig, name: str, outtype: str) -> None:
    arch = cfg.arch
    w.add_name(name)
    w.add_file_type(FILE_TYPE[outtype])
    w.add_context_length(cfg.max_seq_len)
    w.add_embedding_length(cfg.d_model)
    w.add_block_count(cfg.n_layer)
    w.add_feed_forward_length(cfg.ff_dim)
    w.add_head_count(cfg.n_head)
    w.add_vocab_size(cfg.vocab_size)
    if arch == "gpt2":
        w.add_layer_norm_eps(cfg.norm_eps)
        return
    w.add_head_count_kv(cfg.kv_heads)
    if cfg.n_expert:
        w.add_expert_count(cfg.n_expert)
        w.add_expert_used_count(cfg.n_expert_active)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_rope_dimension_count(cfg.dim_head)
    if cfg.head_dim:
        w.add_key_length(cfg.dim_head)
        w.add_value_length(cfg.dim_head)
    theta = cfg.rope_theta
    if cfg.rope_scaling == "ntk":  # static NTK is exactly a larger base
        theta = theta * cfg.rope_factor ** (cfg.dim_head / (cfg.dim_head - 2))
    w.add_rope_freq_base(theta)
    if cfg.rope_scaling in ("linear", "yarn"):
        import gguf

        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR if cfg.rope_scaling == "linear" else gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(cfg.rope_factor)
        if cfg.rope_original_max_seq_len:
            w.add_rope_scaling_orig_ctx_len(cfg.rope_original_max_seq_len)


# llama.cpp's spelling of each named pre-tokenizer (`tokenizer.ggml.pre`); it refuses names it does not
# know, such as plain "gpt2". llmkit's importer reads both spellings.
LLAMA_CPP_PRE = {"gpt2": "gpt-2", "llama3": "llama-bpe", "qwen2": "qwen2", "smollm": "smollm"}


def _add_tokenizer(w, tok) -> None:
    tokens = [t if t is not None else f"[PAD{i}]" for i, t in enumerate(tok.tokens)]
    specials = set(tok.special_tokens.values())
    w.add_tokenizer_model("gpt2")
    if isinstance(tok.pre, str):
        w.add_tokenizer_pre(LLAMA_CPP_PRE.get(tok.pre, tok.pre))
    w.add_token_list(tokens)
    w.add_token_types([3 if i in specials else (5 if tok.tokens[i] is None else 1) for i in range(len(tokens))])
    w.add_token_merges([f"{tokens[a]} {tokens[b]}" for a, b, *_ in tok.merge_ids()])
    for setter, value in ((w.add_bos_token_id, tok.bos_id), (w.add_eos_token_id, tok.eos_id),
                          (w.add_pad_token_id, tok.pad_id), (w.add_unk_token_id, tok.unk_id)):
        if value is not None:
            setter(value)
    w.add_add_bos_token(False)
    if tok.chat_template:
        w.add_chat_template(tok.chat_template)


def save_gguf(path: str | os.PathLike, cfg: ModelConfig, sd: dict[str, torch.Tensor], tok,
              outtype: str = "f16", name: str = "llmkit-model") -> Path:
    """Write a GGUF file atomically (temp file + rename)."""
    import gguf

    if outtype not in OUTTYPES:
        raise ConfigError(f"unknown GGUF outtype {outtype!r}", f"choose one of: {', '.join(OUTTYPES)}")
    if tok is None:
        raise FormatError("a GGUF file needs a tokenizer and this model has none", "load a model with tokenizer.json")
    dst = Path(path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    w = gguf.GGUFWriter(str(tmp), cfg.arch)
    try:
        _add_config(w, cfg, name, outtype)
        _add_tokenizer(w, tok)
        for tname, t in gguf_tensors(cfg, sd).items():
            qtype = outtype if t.ndim >= 2 and not tname.startswith("rope_freqs") else "f32"
            if qtype in ("q8_0", "q4_0", "q4_1") and t.shape[-1] % 32:
                qtype = "f16"  # rows must be whole 32-value blocks
            data = quantize(t.reshape(-1, t.shape[-1]) if t.ndim > 2 else t, qtype.upper())
            if t.ndim > 2:  # stacked experts: (E, rows, row bytes) keeps the 3-D shape
                data = data.reshape(*t.shape[:-1], -1)
            w.add_tensor(tname, np.ascontiguousarray(data),  # uint8 (rows, row_bytes): gguf derives the shape
                         raw_dtype=getattr(gguf.GGMLQuantizationType, qtype.upper()))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, dst)
    except BaseException:
        w.close()
        tmp.unlink(missing_ok=True)
        raise
    return dst

"""GGUF (llama.cpp's file) → llmkit ModelConfig + state dict + Tokenizer.

The container and the block dequantizers live in gguf_reader / gguf_quants;
this module owns the *mapping*: metadata keys to ModelConfig fields, GGUF
tensor names to ours, and the one trap of the format — llama.cpp's converter
permutes the rows of Q and K for its interleaved RoPE, so we undo it to get
back the "rotate half" layout our attention (and transformers) uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from llmkit.core.errors import FormatError
from llmkit.formats.gguf_reader import GGUFFile, read_gguf
from llmkit.model.config import ModelConfig

if TYPE_CHECKING:
    from llmkit.tokenizer import Tokenizer

SUPPORTED_ARCHS = ("llama", "qwen2", "gpt2")
# llama.cpp marks llama-family files with interleaved ("NORM") RoPE and permutes q/k for it;
# qwen2 uses NEOX RoPE (our layout already), so nothing to undo there.
PERMUTED_ARCHS = ("llama",)


def unpermute_qk(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Inverse of llama.cpp's permute: rows (h, D/2, 2) interleaved → (h, 2, D/2) halves.

    Works for weights (out, in) and biases (out,).
    """
    rest = w.shape[1:]
    head_dim = w.shape[0] // n_head
    return w.reshape(n_head, head_dim // 2, 2, *rest).transpose(1, 2).reshape(w.shape)


def config_from_metadata(md: dict[str, Any], tensor_names: set[str]) -> ModelConfig:
    arch = md.get("general.architecture")
    if arch not in SUPPORTED_ARCHS:
        raise FormatError(f"unsupported GGUF architecture {arch!r}",
                          f"llmkit runs {', '.join(SUPPORTED_ARCHS)}; convert another model or open an issue")

    def get(key: str, default: Any = None) -> Any:
        return md.get(f"{arch}.{key}", default)

    n_head = int(get("attention.head_count"))
    d_model = int(get("embedding_length"))
    tokens = md.get("tokenizer.ggml.tokens") or []
    vocab = int(get("vocab_size", 0) or len(tokens))
    if "token_embd.weight" not in tensor_names:
        raise FormatError("GGUF has no token_embd.weight tensor", "the file is incomplete or not a language model")
    common = dict(arch=arch, vocab_size=vocab, n_layer=int(get("block_count")), n_head=n_head,
                  d_model=d_model, d_ff=int(get("feed_forward_length")),
                  max_seq_len=int(get("context_length", 2048)),
                  tie_embeddings="output.weight" not in tensor_names)
    if arch == "gpt2":
        return ModelConfig(**common, pos="learned", norm="layernorm", mlp="gelu_tanh", mlp_bias=True,
                           qkv_bias=True, attn_out_bias=True,
                           norm_eps=float(get("attention.layer_norm_epsilon", 1e-5)))
    n_kv = int(get("attention.head_count_kv", n_head))
    head_dim = int(get("attention.key_length", 0) or d_model // n_head)
    scaling = get("rope.scaling.type")
    scaling = {"none": None, "linear": "linear", "yarn": "yarn"}.get(scaling, scaling)
    return ModelConfig(
        **common, n_kv_head=n_kv, head_dim=None if head_dim * n_head == d_model else head_dim,
        pos="rope", rope_theta=float(get("rope.freq_base", 10000.0)),
        rope_scaling=scaling, rope_factor=float(get("rope.scaling.factor", 1.0) or 1.0),
        rope_original_max_seq_len=get("rope.scaling.original_context_length"),
        norm="rmsnorm", norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
        mlp="swiglu", qkv_bias="blk.0.attn_q.bias" in tensor_names,
        n_expert=int(get("expert_count", 0) or 0), n_expert_active=int(get("expert_used_count", 2) or 2),
    )


_LAYER_MAP = {
    "attn_norm": "attn_norm", "ffn_norm": "mlp_norm",
    "attn_q": "attn.wq", "attn_k": "attn.wk", "attn_v": "attn.wv", "attn_output": "attn.wo",
    "ffn_gate": "mlp.w_gate", "ffn_up": "mlp.w_up", "ffn_down": "mlp.w_down",
}
_EXPERT_MAP = {"ffn_gate_exps": "w_gate", "ffn_up_exps": "w_up", "ffn_down_exps": "w_down"}
_TOP_MAP = {"token_embd": "tok_emb", "position_embd": "pos_emb", "output_norm": "norm_f", "output": "lm_head"}


def our_name(gguf_name: str) -> str | None:
    """'blk.3.attn_q.weight' → 'blocks.3.attn.wq.weight'; None for tensors we do not use."""
    parts = gguf_name.split(".")
    if parts[0] == "blk" and len(parts) == 4 and parts[2] in _LAYER_MAP:
        return f"blocks.{parts[1]}.{_LAYER_MAP[parts[2]]}.{parts[3]}"
    if len(parts) == 2 and parts[0] in _TOP_MAP:
        return f"{_TOP_MAP[parts[0]]}.{parts[1]}"
    return None


def state_dict_from_gguf(gf: GGUFFile, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    sd: dict[str, torch.Tensor] = {}
    for name in gf.tensors:
        if name.startswith("blk.") and ".attn_qkv." in name:  # GPT-2 stores q, k, v fused
            i, kind = name.split(".")[1], name.split(".")[-1]
            q, k, v = gf.tensor(name).split([cfg.d_model, cfg.d_model, cfg.d_model], dim=0)
            for short, t in (("wq", q), ("wk", k), ("wv", v)):
                sd[f"blocks.{i}.attn.{short}.{kind}"] = t.contiguous()
            continue
        parts = name.split(".")
        if parts[0] == "blk" and parts[2] == "ffn_gate_inp":  # mixture of experts: the router
            sd[f"blocks.{parts[1]}.mlp.gate.{parts[3]}"] = gf.tensor(name)
            continue
        if parts[0] == "blk" and parts[2] in _EXPERT_MAP:  # (E, out, in): one slice per expert
            for e, t in enumerate(gf.tensor(name).unbind(0)):
                sd[f"blocks.{parts[1]}.mlp.experts.{e}.{_EXPERT_MAP[parts[2]]}.{parts[3]}"] = t.contiguous()
            continue
        ours = our_name(name)
        if ours is None:
            continue  # e.g. rope_freqs: derived from the config here
        t = gf.tensor(name)
        if cfg.arch in PERMUTED_ARCHS and (".attn_q." in name or ".attn_k." in name):
            t = unpermute_qk(t, cfg.n_head if ".attn_q." in name else cfg.kv_heads)
        sd[ours] = t
    return sd


def tokenizer_from_metadata(md: dict[str, Any]) -> "Tokenizer":
    from llmkit.tokenizer import Tokenizer

    model = md.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise FormatError(f"GGUF tokenizer model {model!r} is not supported yet",
                          "llmkit reads byte-level BPE ('gpt2') vocabularies")
    tok = Tokenizer.from_vocab(
        tokens=md["tokenizer.ggml.tokens"], merges=md.get("tokenizer.ggml.merges") or [],
        token_types=md.get("tokenizer.ggml.token_type"),
        pre=md.get("tokenizer.ggml.pre") or "gpt2",
        bos_id=md.get("tokenizer.ggml.bos_token_id"), eos_id=md.get("tokenizer.ggml.eos_token_id"),
        pad_id=md.get("tokenizer.ggml.padding_token_id"), unk_id=md.get("tokenizer.ggml.unknown_token_id"),
    )
    tok.chat_template = md.get("tokenizer.chat_template")
    return tok


def load_gguf(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], Tokenizer]:
    """Read a GGUF file into (config, fp32 state dict in our names, tokenizer)."""
    gf = read_gguf(path)
    cfg = config_from_metadata(gf.metadata, set(gf.tensors))
    sd = state_dict_from_gguf(gf, cfg)
    tok = tokenizer_from_metadata(gf.metadata)
    return cfg, sd, tok


__all__ = ["config_from_metadata", "load_gguf", "our_name", "unpermute_qk"]

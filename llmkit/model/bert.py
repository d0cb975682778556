"""A BERT-style bidirectional encoder (all-MiniLM-L6-v2 and friends) and sentence pooling.

Like the decoder, it is a pure function of token ids: ``forward(ids, mask) -> hidden states``.
Post-LN layout (the original BERT): ``x = LN(x + attn(x)); x = LN(x + mlp(x))``.
Weights load from a Hugging Face ``BertModel`` state dict (``load_hf_state_dict``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    d_model: int = 384
    n_layer: int = 6
    n_head: int = 12
    ff_dim: int = 1536
    max_positions: int = 512
    type_vocab_size: int = 2
    norm_eps: float = 1e-12
    pad_id: int = 0

    @classmethod
    def from_hf(cls, path: str | Path) -> "BertConfig":
        """Read an HF ``config.json`` (BertConfig names) into ours."""
        hf = json.loads(Path(path).read_text())
        names = {"vocab_size": "vocab_size", "hidden_size": "d_model", "num_hidden_layers": "n_layer",
                 "num_attention_heads": "n_head", "intermediate_size": "ff_dim",
                 "max_position_embeddings": "max_positions", "type_vocab_size": "type_vocab_size",
                 "layer_norm_eps": "norm_eps", "pad_token_id": "pad_id"}
        ours = {names[k]: v for k, v in hf.items() if k in names}
        assert set(ours) <= {f.name for f in fields(cls)}
        return cls(**ours)


class BertLayer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.d_model // cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)  # q, k, v fused: one matmul instead of three
        self.wo = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln_attn = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.w_up = nn.Linear(cfg.d_model, cfg.ff_dim)
        self.w_down = nn.Linear(cfg.ff_dim, cfg.d_model)
        self.ln_mlp = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, H, T, D)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=bias)  # (B, H, T, D), no causal mask
        x = self.ln_attn(x + self.wo(y.transpose(1, 2).reshape(B, T, C)))
        # exact erf GELU, as BERT was trained; the tanh approximation drifts past 1e-4 cosine over 6 layers
        return self.ln_mlp(x + self.w_down(F.gelu(self.w_up(x))))


class BertEncoder(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.max_positions, cfg.d_model)
        self.type_emb = nn.Embedding(cfg.type_vocab_size, cfg.d_model)
        self.ln_emb = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.layers = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.n_layer))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, T) int64, mask (B, T) 1 = real token, 0 = padding -> hidden states (B, T, C)."""
        B, T = ids.shape
        assert T <= self.cfg.max_positions, f"sequence of {T} tokens > {self.cfg.max_positions} positions"
        pos = torch.arange(T, device=ids.device)
        # single-segment input: token type 0 everywhere, so its embedding is one shared row
        x = self.tok_emb(ids) + self.pos_emb(pos)[None] + self.type_emb.weight[0]
        x = self.ln_emb(x)
        bias = None
        if mask is not None and not bool(mask.all()):
            # additive key mask (B, 1, 1, T): padded keys get -inf-like scores; queries at pads are ignored later
            bias = torch.zeros(B, 1, 1, T, dtype=x.dtype, device=x.device)
            bias.masked_fill_(~mask.bool()[:, None, None, :], torch.finfo(x.dtype).min)
        for layer in self.layers:
            x = layer(x, bias)
        return x

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the real tokens' vectors: (B, T, C), (B, T) -> (B, C). Padding does not count."""
    m = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Unit-length rows, so a dot product is the cosine similarity."""
    return x / x.norm(dim=-1, keepdim=True).clamp(min=eps)


def load_hf_state_dict(model: BertEncoder, sd: dict[str, torch.Tensor]) -> BertEncoder:
    """Copy an HF ``BertModel`` state dict (optionally ``bert.``-prefixed) into ``model``; strict."""
    sd = {k.removeprefix("bert."): v for k, v in sd.items()}
    ours: dict[str, torch.Tensor] = {
        "tok_emb.weight": sd["embeddings.word_embeddings.weight"],
        "pos_emb.weight": sd["embeddings.position_embeddings.weight"],
        "type_emb.weight": sd["embeddings.token_type_embeddings.weight"],
        "ln_emb.weight": sd["embeddings.LayerNorm.weight"],
        "ln_emb.bias": sd["embeddings.LayerNorm.bias"],
    }
    for i in range(model.cfg.n_layer):
        p, q = f"encoder.layer.{i}.", f"layers.{i}."
        att = p + "attention.self."
        for part in ("weight", "bias"):
            ours[q + "qkv." + part] = torch.cat([sd[att + n + "." + part] for n in ("query", "key", "value")])
            ours[q + "wo." + part] = sd[p + "attention.output.dense." + part]
            ours[q + "ln_attn." + part] = sd[p + "attention.output.LayerNorm." + part]
            ours[q + "w_up." + part] = sd[p + "intermediate.dense." + part]
            ours[q + "w_down." + part] = sd[p + "output.dense." + part]
            ours[q + "ln_mlp." + part] = sd[p + "output.LayerNorm." + part]
    model.load_state_dict(ours, strict=True)
    return model

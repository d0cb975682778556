"""Building blocks: norms, attention, MLPs, the transformer block."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmkit.model.config import ModelConfig
from llmkit.model.linear import Linear
from llmkit.model.moe import MoE
from llmkit.model.rope import apply_rope


class RMSNorm(nn.Module):
    """x / rms(x) * weight: LayerNorm without mean-centering or bias (Llama)."""

    def __init__(self, dim: int, eps: float = 1e-5, device=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:  # one fused op: at batch-1 decode, op count is the overhead
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        # normalise in fp32 under bf16/fp16: the mean of squares loses precision fast
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


def make_norm(cfg: ModelConfig, device=None) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return RMSNorm(cfg.d_model, cfg.norm_eps, device=device)
    return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, device=device)


class Attention(nn.Module):
    """Causal self-attention with MHA/GQA/MQA, optional RoPE and a KV cache."""

    def __init__(self, cfg: ModelConfig, layer_idx: int, device=None):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.kv_heads, cfg.dim_head
        self.use_rope = cfg.pos == "rope"
        self.dropout = cfg.dropout
        self.wq = Linear(cfg.d_model, self.n_head * self.head_dim, bias=cfg.qkv_bias, device=device)
        self.wk = Linear(cfg.d_model, self.n_kv_head * self.head_dim, bias=cfg.qkv_bias, device=device)
        self.wv = Linear(cfg.d_model, self.n_kv_head * self.head_dim, bias=cfg.qkv_bias, device=device)
        self.wo = Linear(self.n_head * self.head_dim, cfg.d_model, bias=cfg.attn_out_bias, device=device)

    def forward(self, x, cos, sin, mask, kv_cache=None):
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.wk(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D): fewer KV heads shrink the cache
        v = self.wv(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        if self.use_rope:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)  # (B, Hkv, S, D) with S = all slots so far
        is_causal = mask is None and T > 1  # no cache offset and no padding: the plain causal mask
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.n_kv_head != self.n_head,  # each KV head serves n_head/n_kv_head query heads
        )  # (B, H, T, D)
        return self.wo(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))


class MLP(nn.Module):
    """SwiGLU (Llama): down(silu(gate(x)) * up(x)); GELU (GPT-2): down(gelu(up(x)))."""

    def __init__(self, cfg: ModelConfig, device=None):
        super().__init__()
        self.gated = cfg.mlp == "swiglu"
        self.approx = "tanh" if cfg.mlp == "gelu_tanh" else "none"
        if self.gated:
            self.w_gate = Linear(cfg.d_model, cfg.ff_dim, bias=cfg.mlp_bias, device=device)
        self.w_up = Linear(cfg.d_model, cfg.ff_dim, bias=cfg.mlp_bias, device=device)
        self.w_down = Linear(cfg.ff_dim, cfg.d_model, bias=cfg.mlp_bias, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))
        return self.w_down(F.gelu(self.w_up(x), approximate=self.approx))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig, layer_idx: int, device=None):
        super().__init__()
        self.attn_norm = make_norm(cfg, device)
        self.attn = Attention(cfg, layer_idx, device)
        self.mlp_norm = make_norm(cfg, device)
        self.mlp = MoE(cfg, device) if cfg.n_expert else MLP(cfg, device)  # one Block for dense and MoE
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin, mask, kv_cache=None):
        x = x + self.drop(self.attn(self.attn_norm(x), cos, sin, mask, kv_cache))
        return x + self.drop(self.mlp(self.mlp_norm(x)))

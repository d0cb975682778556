"""Mixture of experts: a router picks k of E SwiGLU MLPs per token (Mixtral's layer).

    x (N, C) ─ gate ─► logits (N, E) ─ top-k ─► (weights (N, k), experts (N, k))
    y[n] = sum_j weights[n, j] * expert_{experts[n, j]}(x[n])

The k chosen logits are softmaxed among themselves, so a token's weights sum to
1: an MoE whose experts are all the same MLP computes exactly that MLP. Only the
chosen experts run on a token, which is why an MoE with E experts costs about
k/E of its parameter count per token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmkit.model.config import ModelConfig
from llmkit.model.linear import Linear


def route(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k routing: (weights (N, k) summing to 1 per row, expert ids (N, k)), best first.

    route([[1, 2, 3, 0]], 2) -> weights [[e/(1+e), 1/(1+e)]] = [[0.731, 0.269]], ids [[2, 1]].
    Softmax over all E then renormalising the top k gives the same weights (Mixtral's form).
    """
    top, ids = logits.topk(k, dim=-1)  # (N, k)
    return F.softmax(top.float(), dim=-1).to(logits.dtype), ids


class MoE(nn.Module):
    """Drop-in for MLP: same input and output, n_expert MLPs behind a linear router."""

    def __init__(self, cfg: ModelConfig, device=None):
        super().__init__()
        from llmkit.model.layers import MLP  # layers imports this module for Block

        self.k = cfg.n_expert_active
        self.gate = Linear(cfg.d_model, cfg.n_expert, bias=False, device=device)
        self.experts = nn.ModuleList(MLP(cfg, device) for _ in range(cfg.n_expert))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        flat = x.reshape(B * T, C)  # (N, C)
        weights, ids = route(self.gate(flat), self.k)  # (N, k), (N, k)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows, slot = (ids == e).nonzero(as_tuple=True)  # tokens that chose expert e, and in which slot
            if rows.numel():
                out.index_add_(0, rows, expert(flat[rows]) * weights[rows, slot, None])
        return out.view(B, T, C)

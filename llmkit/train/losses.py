"""Losses as small pure functions (error-prone math gets a known-value test)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE = -100


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE) -> torch.Tensor:
    """Mean next-token cross-entropy in nats. logits (B, T, V), targets (B, T).

    Uniform logits over V tokens give exactly log(V).
    """
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=ignore_index)


def bits_per_byte(loss_nats: float, bytes_per_token: float) -> float:
    """Convert a per-token loss in nats to bits per UTF-8 byte of text.

    Tokenizer-independent, so models with different vocabularies compare fairly:
    bits/byte = (nats/token) / ln 2 / (bytes/token).
    """
    return loss_nats / math.log(2) / bytes_per_token

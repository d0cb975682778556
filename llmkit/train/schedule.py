"""Learning-rate schedule: linear warmup, then cosine decay to a floor."""

from __future__ import annotations

import math


def lr_at(step: int, max_lr: float, warmup: int, max_steps: int, min_lr: float = 0.0) -> float:
    """Learning rate for a 0-based optimizer step.

    >>> lr_at(0, 1.0, 10, 100)          # warmup starts above zero, so step 0 still learns
    0.1
    >>> lr_at(10, 1.0, 10, 100)         # peak at the end of warmup
    1.0
    >>> lr_at(100, 1.0, 10, 100, 0.1)   # floor at the end
    0.1
    """
    if warmup > 0 and step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= max_steps:
        return min_lr
    progress = (step - warmup) / max(1, max_steps - warmup)  # 0 → 1 over the decay phase
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))

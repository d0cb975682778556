"""Small statistics shared by the layers that report measurements (eval, the fine-tuning demo)."""

from __future__ import annotations

import math


def mean_stderr(values: list[float]) -> float:
    """Standard error of the mean: sample standard deviation (n - 1) / sqrt(n)."""
    n = len(values)
    if n < 2:
        return float("nan")
    mu = sum(values) / n
    var = sum((v - mu) ** 2 for v in values) / (n - 1)
    return math.sqrt(var / n)

"""Compute-optimal sizing (`llmkit plan`): how big a model, how many tokens, how long.

Training a dense transformer costs about C = 6·N·D FLOPs (N parameters, D
tokens: 2 for the forward multiply-add, 4 for the backward). Hoffmann et al.
(2022, "Chinchilla") found that for a fixed budget C the loss is lowest when
parameters and tokens grow together, at roughly D ≈ 20·N. So:

    given N:  D = 20·N,            C = 6·N·D = 120·N²
    given D:  N = D / 20,          C = 120·N²
    given C:  N = sqrt(C / 120),   D = 20·N

Time is C divided by what the device actually sustains (measured here with a
matmul, times a model-FLOPs-utilisation factor), and memory for plain AdamW
training in fp32 is 16 bytes per parameter (weights 4, gradients 4, two Adam
moments 8) plus activations.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch

from llmkit.core.errors import ConfigError

TOKENS_PER_PARAM = 20.0
UNITS = {"k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "b": 1e9, "B": 1e9, "g": 1e9, "G": 1e9, "t": 1e12, "T": 1e12}


def parse_count(text: str | float | int) -> float:
    """'135M' -> 1.35e8, '2B' -> 2e9, '1e18' -> 1e18."""
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip().replace("_", "").replace(",", "")
    try:
        if s and s[-1] in UNITS:
            return float(s[:-1]) * UNITS[s[-1]]
        return float(s)
    except ValueError:
        raise ConfigError(f"cannot read {text!r} as a number", "write e.g. 135M, 2B, 3.5e18") from None


@dataclass
class Plan:
    params: float
    tokens: float
    flops: float
    train_memory_gb: float  # weights + grads + AdamW moments, fp32, before activations
    device: str
    sustained_tflops: float  # measured matmul throughput × mfu
    hours: float

    def to_dict(self) -> dict:
        return asdict(self)


def chinchilla(params: float | None = None, tokens: float | None = None, flops: float | None = None) -> tuple[float, float, float]:
    """Fill in the compute-optimal (N, D, C) from any one of them (or N and D together)."""
    given = sum(x is not None for x in (params, tokens, flops))
    if given == 0:
        raise ConfigError("give --params, --tokens or --flops", "e.g. llmkit plan --params 135M")
    if flops is not None and given > 1:
        raise ConfigError("--flops cannot be combined with --params/--tokens", "pass one of them")
    if flops is not None:
        params = math.sqrt(flops / (6 * TOKENS_PER_PARAM))
        tokens = TOKENS_PER_PARAM * params
    elif params is not None and tokens is None:
        tokens = TOKENS_PER_PARAM * params
    elif tokens is not None and params is None:
        params = tokens / TOKENS_PER_PARAM
    assert params is not None and tokens is not None
    if params <= 0 or tokens <= 0:
        raise ConfigError("sizes must be positive", "e.g. --params 135M")
    return params, tokens, 6 * params * tokens


def measure_tflops(device: torch.device, seconds: float = 1.0) -> float:
    """Sustained fp32 (CPU) or bf16 (GPU) matmul TFLOP/s on this device."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = 1024 if device.type == "cpu" else 4096
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        count += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * count / (time.perf_counter() - t0) / 1e12


def plan(params: str | float | None = None, tokens: str | float | None = None, flops: str | float | None = None,
         device: str = "auto", mfu: float = 0.4, tflops: float | None = None) -> Plan:
    """Compute-optimal params/tokens/FLOPs and time and memory estimates on a device."""
    from llmkit.core.runtime import resolve_device

    n, d, c = chinchilla(None if params is None else parse_count(params),
                         None if tokens is None else parse_count(tokens),
                         None if flops is None else parse_count(flops))
    if not 0 < mfu <= 1:
        raise ConfigError(f"mfu={mfu} must be in (0, 1]", "typical values: 0.3-0.5 on GPUs, 0.2-0.5 on CPUs")
    dev = resolve_device(device)
    sustained = (tflops if tflops is not None else measure_tflops(dev)) * mfu
    return Plan(params=n, tokens=d, flops=c, train_memory_gb=16 * n / 1e9, device=str(dev),
                sustained_tflops=sustained, hours=c / (sustained * 1e12) / 3600)

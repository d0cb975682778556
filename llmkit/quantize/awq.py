"""AWQ-style activation-aware scaling: protect the weights that meet large activations.

A few input channels of each layer carry activations far larger than the
rest; rounding errors on the weights that multiply them dominate the output
error. AWQ (Lin et al., 2023) scales those weight columns *up* before
quantizing (so they use more of the grid) and the activations *down* by the
same factor, which leaves the fp model unchanged::

    y = x W^T = (x / s) (W * s)^T          s (K,) > 0, one factor per input channel

The division by s is folded into whatever produced x: the RMSNorm/LayerNorm
weight in front of q/k/v and gate/up, or the rows of up_proj in front of
down_proj. s = mean|x|^alpha, with alpha picked by a small grid search that
minimises the quantized output error on calibration activations. (The
reference implementation also searches a per-group weight clipping range;
this one does not.)
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

GRID = 20


def scale_candidates(x_mean_abs: torch.Tensor, alpha: float) -> torch.Tensor:
    """s = mean|x|^alpha, normalised so max(s) * min(s) = 1 (keeps the weights' overall range)."""
    s = x_mean_abs.float().clamp(min=1e-4).pow(alpha)
    return s / (s.max() * s.min()).sqrt()


def search_scale(x: torch.Tensor, weights: Sequence[torch.Tensor],
                 fake_quant: Callable[[torch.Tensor], torch.Tensor], grid: int = GRID) -> tuple[torch.Tensor, list[float]]:
    """x (n, K) calibration inputs, weights [(N_i, K)] that read x -> (best s (K,), error per alpha).

    ``fake_quant(W)`` returns the dequantized quantization of W. alpha = 0 is
    plain round-to-nearest (s = 1), so the chosen s is never worse than RTN
    on these inputs.
    """
    x = x.reshape(-1, x.shape[-1]).float()
    W = torch.cat([w.detach().float() for w in weights])  # (sum N_i, K)
    ref = x @ W.T
    mean_abs = x.abs().mean(dim=0)
    errors, best, best_s = [], float("inf"), torch.ones(x.shape[1])
    for i in range(grid):
        s = scale_candidates(mean_abs, i / grid)
        err = ((x @ (fake_quant(W * s) / s).T - ref) ** 2).mean().item()
        errors.append(err)
        if err < best:
            best, best_s = err, s
    return best_s, errors

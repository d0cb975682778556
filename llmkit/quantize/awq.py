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
minimises the quantized output error on calibration activations.

After scaling, each group's range is also *clipped* (``search_clip``): a group
whose grid is stretched by one outlier weight rounds every other weight
coarsely. Shrinking the range to r * [min, max] (r in 1.0 .. 0.5) saturates the
outlier but refines the rest; r is chosen per (output row, group) to minimise
that group's share of the output error, sum_t (x_t,g . (Wq_g - W_g))^2.
r = 1 is in the grid, so clipping never does worse than none on the
calibration inputs. As in the reference, q and k are not clipped: their error
goes through the attention softmax, which this metric does not see.
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


CLIP_GRID = 10  # shrink ratios 1.0, 0.95, ..., 0.55
CLIP_ROWS = 256  # calibration tokens used by the clip search


def clip_group(w: torch.Tensor, r: torch.Tensor, symmetric: bool) -> torch.Tensor:
    """w (N, groups, G) clipped to r (N, groups) times each group's range: [-r max|w|, r max|w|] or r [min, max]."""
    if symmetric:
        hi = w.abs().amax(dim=-1) * r
        lo = -hi
    else:
        lo, hi = w.amin(dim=-1) * r, w.amax(dim=-1) * r
    return torch.maximum(torch.minimum(w, hi[..., None]), lo[..., None])


def search_clip(x: torch.Tensor, w: torch.Tensor, group_size: int, symmetric: bool,
                fake_quant: Callable[[torch.Tensor], torch.Tensor], grid: int = CLIP_GRID,
                rows_per_step: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """x (n, K) inputs, w (N, K) -> (w clipped per group at the best ratio, that ratio (N, groups)).

    ``fake_quant`` quantizes and dequantizes an (N, K) matrix group-wise; groups are independent,
    so one call scores a ratio for every group at once.
    """
    x = x.reshape(-1, x.shape[-1]).float()
    N, K = w.shape
    groups = K // group_size
    xg = x.reshape(-1, groups, group_size)  # (n, groups, G)
    wg = w.detach().float().reshape(N, groups, group_size)
    best_err = torch.full((N, groups), float("inf"))
    best_r = torch.ones(N, groups)
    for i in range(grid):
        r = torch.full((N, groups), 1.0 - 0.5 * i / grid)
        clipped = clip_group(wg, r, symmetric)
        delta = fake_quant(clipped.reshape(N, K)).reshape(N, groups, group_size) - wg
        err = torch.zeros(N, groups)
        for a in range(0, N, rows_per_step):  # (n, rows, groups) at a time: bounded memory
            err[a:a + rows_per_step] = torch.einsum("ngk,mgk->nmg", xg, delta[a:a + rows_per_step]).pow(2).mean(0)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_r = torch.where(better, r, best_r)
    return clip_group(wg, best_r, symmetric).reshape(N, K).to(w.dtype), best_r

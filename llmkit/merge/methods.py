"""Merge math as small pure functions over tensors.

Every function takes same-shaped tensors (one per parent) and returns the merged
tensor. Work happens in float32 (float64 stays float64); callers cast the result.

    linear([a, b], [1, 3])                  # (a + 3b) / 4 with normalize=True
    slerp(0.5, a, b)                        # halfway along the arc between a and b
    task_vectors(base, [a, b])              # [a - base, b - base]
    ties(base, [a, b], [1, 1], [0.5, 0.5])  # trim to half, elect signs, disjoint mean

Conventions follow mergekit so its YAML configs mean the same thing here:
``density`` is the fraction of a task vector that is KEPT, ``weight`` scales a
task vector, ``lambda`` scales the merged task vector, ``t=0`` is the base.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

DOT_THRESHOLD = 0.9995  # |cos| above this: the arc is a line, and sin(theta) ~ 0 would blow up
NORM_EPS = 1e-8


def _work(x: torch.Tensor) -> torch.Tensor:
    return x.double() if x.dtype == torch.float64 else x.float()


def lerp(t: float, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(1 - t) a + t b."""
    return (1 - t) * _work(a) + t * _work(b)


def linear(tensors: Sequence[torch.Tensor], weights: Sequence[float], normalize: bool = True) -> torch.Tensor:
    """Weighted sum (a model soup); normalize divides by the weight total so weights act as ratios.

    linear([x], [w]) == x for any w != 0 with normalize: one model is the identity.
    """
    assert len(tensors) == len(weights) and tensors, "one weight per tensor"
    if normalize:  # divide the weights, not the sum: one model then gets weight exactly 1
        total = float(sum(weights))
        assert total != 0, "normalize needs a non-zero weight total (checked by the config)"
        weights = [float(w) / total for w in weights]
    out = torch.zeros_like(_work(tensors[0]))
    for x, w in zip(tensors, weights):
        out.add_(_work(x), alpha=float(w))
    return out


def slerp_coefficients(t: float | torch.Tensor, dot: torch.Tensor,
                       dot_threshold: float = DOT_THRESHOLD) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients (ca, cb) so that slerp = ca * a + cb * b, given dot = cos(angle between a and b).

    On the arc: ca = sin((1-t) theta) / sin theta, cb = sin(t theta) / sin theta.
    Near-collinear (|dot| > threshold) falls back to lerp: ca = 1 - t, cb = t.
    dot = 0 (orthogonal), t = 0.5 gives ca = cb = sin(pi/4) = 1/sqrt(2).
    """
    t = torch.as_tensor(t, dtype=dot.dtype)
    dot = dot.clamp(-1, 1)
    straight = dot.abs() > dot_threshold
    theta = torch.acos(torch.where(straight, torch.zeros_like(dot), dot))  # no NaN on the unused branch
    sin_theta = torch.where(straight, torch.ones_like(theta), torch.sin(theta))
    ca = torch.where(straight, 1 - t, torch.sin((1 - t) * theta) / sin_theta)
    cb = torch.where(straight, t, torch.sin(t * theta) / sin_theta)
    return ca, cb


def slerp(t: float, a: torch.Tensor, b: torch.Tensor,
          dot_threshold: float = DOT_THRESHOLD, eps: float = NORM_EPS) -> torch.Tensor:
    """Spherical interpolation from a (t=0) to b (t=1), the whole tensor as one vector.

    The angle is measured between the normalised tensors, but the coefficients
    apply to the raw tensors, so the norm interpolates too (as in mergekit).
    """
    x, y = _work(a), _work(b)
    nx, ny = torch.linalg.vector_norm(x), torch.linalg.vector_norm(y)
    nx = torch.where(nx > eps, nx, torch.ones_like(nx))  # a zero vector has no direction: dot = 0
    ny = torch.where(ny > eps, ny, torch.ones_like(ny))
    dot = ((x / nx) * (y / ny)).sum()  # cosine of the angle between a and b
    ca, cb = slerp_coefficients(t, dot, dot_threshold)
    return ca * x + cb * y


def task_vectors(base: torch.Tensor, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """tau_i = theta_i - theta_base: what fine-tuning added to the base."""
    b = _work(base)
    return [_work(x) - b for x in tensors]


def trim_mask(delta: torch.Tensor, density: float) -> torch.Tensor:
    """TIES trim: a 0/1 mask keeping the top ``density`` fraction of |delta| (at least one entry).

    trim_mask([0.1, -3, 2, -0.5], 0.5) == [0, 1, 1, 0].
    """
    if density >= 1:
        return torch.ones_like(delta)
    if density <= 0 or delta.numel() == 0:
        return torch.zeros_like(delta)
    k = max(1, int(density * delta.numel()))
    flat = delta.abs().reshape(-1)
    keep = torch.argsort(flat, descending=True, stable=True)[:k]  # stable: ties broken by position
    mask = torch.zeros_like(flat)
    mask[keep] = 1
    return mask.reshape(delta.shape)


def dare_mask(delta: torch.Tensor, density: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """DARE drop: each entry kept independently with probability ``density`` (a seeded Bernoulli)."""
    if density >= 1:
        return torch.ones_like(delta)
    if density <= 0:
        return torch.zeros_like(delta)
    return (torch.rand(delta.shape, generator=generator, dtype=torch.float32) < density).to(delta.dtype)


def dare(delta: torch.Tensor, density: float, generator: torch.Generator | None = None,
         rescale: bool = True) -> torch.Tensor:
    """Drop And REscale: m * delta / density, so E[result] = delta entry by entry.

    With keep probability p and scale 1/p, each entry is delta/p with probability p and 0
    otherwise: its mean is exactly delta (the sum of the task vector is preserved on average).
    """
    kept = delta * dare_mask(delta, density, generator)
    if rescale and 0 < density < 1:
        kept = kept / density
    return kept


def elect_sign(deltas: torch.Tensor, method: str = "sum") -> torch.Tensor:
    """TIES elect: the majority sign per entry, +1 or -1 (a tie or zero counts as +1).

    deltas (M, ...) stacked weighted task vectors. "sum" takes the sign of the summed
    mass (the paper's choice: a large update outvotes several small ones); "count"
    takes the sign most models agree on.
    """
    votes = deltas.sum(dim=0) if method == "sum" else deltas.sign().sum(dim=0)
    return torch.where(votes >= 0, 1.0, -1.0).to(deltas.dtype)


def consensus_mask(deltas: torch.Tensor, method: str = "sum") -> torch.Tensor:
    """1 where an entry agrees with the elected sign (zeros never agree), per model: (M, ...)."""
    return (deltas.sign() == elect_sign(deltas, method)).to(deltas.dtype)


def combine_task_vectors(base: torch.Tensor, deltas: Sequence[torch.Tensor], weights: Sequence[float],
                         consensus: str | None = None, normalize: bool = False,
                         lam: float = 1.0) -> torch.Tensor:
    """base + lam * merge(weight_i * delta_i): the shared tail of task arithmetic, TIES and DARE.

    With consensus ("sum"/"count"), only entries whose sign matches the elected sign
    are kept (TIES disjoint merge), and normalize divides each entry by the total weight
    of the models that kept it. Without consensus, normalize divides by the weight sum.
    """
    b = _work(base)
    stacked = torch.stack([_work(d) for d in deltas])  # (M, ...)
    w = torch.tensor([float(x) for x in weights], dtype=stacked.dtype).reshape(-1, *([1] * b.dim()))  # (M, 1..)
    stacked = stacked * w
    if consensus is not None:
        mask = consensus_mask(stacked, consensus)
        mixed = (stacked * mask).sum(dim=0)
        divisor = (w * mask).sum(dim=0)
        divisor = torch.where(divisor == 0, torch.ones_like(divisor), divisor)
    else:
        mixed = stacked.sum(dim=0)
        divisor = w.sum(dim=0)
        divisor = torch.where(divisor.abs() < 1e-8, torch.ones_like(divisor), divisor)
    if normalize:
        mixed = mixed / divisor
    return b + lam * mixed


def task_arithmetic(base: torch.Tensor, tensors: Sequence[torch.Tensor], weights: Sequence[float],
                    normalize: bool = False, lam: float = 1.0) -> torch.Tensor:
    """base + lam * sum_i w_i (theta_i - base): add (or, with w < 0, subtract) skills."""
    return combine_task_vectors(base, task_vectors(base, tensors), weights, None, normalize, lam)


def ties(base: torch.Tensor, tensors: Sequence[torch.Tensor], weights: Sequence[float],
         densities: Sequence[float], normalize: bool = True, lam: float = 1.0,
         consensus: str = "sum") -> torch.Tensor:
    """TIES-merging: trim each task vector to its top-density entries, elect signs, disjoint mean."""
    deltas = [d * trim_mask(d, k) for d, k in zip(task_vectors(base, tensors), densities)]
    return combine_task_vectors(base, deltas, weights, consensus, normalize, lam)


def dare_merge(base: torch.Tensor, tensors: Sequence[torch.Tensor], weights: Sequence[float],
               densities: Sequence[float], generator: torch.Generator | None = None,
               consensus: str | None = None, normalize: bool = False, lam: float = 1.0,
               rescale: bool = True) -> torch.Tensor:
    """DARE (consensus=None, mergekit's dare_linear) or DARE-TIES (consensus="sum")."""
    deltas = [dare(d, k, generator, rescale) for d, k in zip(task_vectors(base, tensors), densities)]
    return combine_task_vectors(base, deltas, weights, consensus, normalize, lam)

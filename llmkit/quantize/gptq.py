"""GPTQ: quantize a layer one input column at a time, pushing each column's error onto the rest.

Round-to-nearest treats every weight alone. GPTQ (Frantar et al., 2022)
minimises the *output* error ``||X W^T - X Q^T||^2`` on calibration inputs X.
With ``H = X^T X`` (K, K), quantizing column j leaves an error ``e_j`` that the
not-yet-quantized columns can absorb: the optimal update (Optimal Brain
Surgeon with one weight removed) is::

    err   = (w_j - q_j) / Hinv[j, j]
    W[:, j+1:] -= err[:, None] * Hinv[j, j+1:]

where Hinv is the upper Cholesky factor of H^-1 (so the rows of Hinv already
account for the columns fixed before them). Columns go in blocks of 128 with
the update to later blocks applied lazily, one matmul per block.

act_order quantizes the columns with the largest ``H[j, j]`` (the inputs with
the most energy) first, while the most freedom to compensate remains. Group
scales are computed from the original weight before the pass ("static
groups"), so they stay contiguous in the original column order and the
result uses the same storage as round-to-nearest.
"""

from __future__ import annotations

import torch

from llmkit.quantize.errors import QuantizationError
from llmkit.quantize.rtn import GroupQuant, check_bits, check_group_size, group_params, quantize_with


def hessian(x: torch.Tensor) -> torch.Tensor:
    """Calibration inputs x (n, K) -> H = 2/n * x^T x (K, K), in float64 for a stable Cholesky."""
    x = x.reshape(-1, x.shape[-1]).double()
    return 2 / x.shape[0] * (x.T @ x)


def _inverse_cholesky(H: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of (H + damp * mean(diag H) * I)^-1."""
    K = H.shape[0]
    H = H + damp * torch.diag(H).mean() * torch.eye(K, dtype=H.dtype)
    L = torch.linalg.cholesky(H)
    return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)


def gptq_quantize(w: torch.Tensor, H: torch.Tensor, bits: int = 4, group_size: int = 128,
                  symmetric: bool = False, act_order: bool = False, block: int = 128,
                  damp: float = 0.01, name: str = "layer") -> GroupQuant:
    """w (N, K), H (K, K) -> GroupQuant with error compensation (see module docstring)."""
    check_bits(bits)
    N, K = w.shape
    check_group_size(K, group_size, name)
    W = w.detach().double().clone()
    H = H.double().clone()
    dead = torch.diag(H) == 0  # inputs that were always 0 carry no information: weight irrelevant
    H[dead, dead] = 1
    W[:, dead] = 0
    scale, zero = group_params(W.float().reshape(N, K // group_size, group_size), bits, symmetric)  # (N, K/G)
    scale, zero = scale.double(), zero.double()
    perm = torch.argsort(torch.diag(H), descending=True) if act_order else torch.arange(K)
    W, H = W[:, perm], H[perm][:, perm]
    try:
        Hinv = _inverse_cholesky(H, damp)
    except torch.linalg.LinAlgError as e:
        raise QuantizationError(f"the calibration Hessian of {name} is not positive definite",
                                "use more (or more varied) calibration text, or raise the dampening") from e
    Q = torch.zeros_like(W)
    groups = perm // group_size  # (K,) group of each permuted column
    for i1 in range(0, K, block):
        i2 = min(i1 + block, K)
        W1, Hinv1 = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2]
        Err1 = torch.zeros_like(W1)
        for i in range(i2 - i1):
            g = groups[i1 + i]
            q = quantize_with(W1[:, i : i + 1], scale[:, g], zero[:, g], bits)[:, 0]  # (N,) codes
            err = (W1[:, i] - (q - zero[:, g]) * scale[:, g]) / Hinv1[i, i]
            W1[:, i:] -= err[:, None] * Hinv1[i, i:][None, :]  # later columns in the block absorb it
            Q[:, i1 + i], Err1[:, i] = q, err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]  # lazy update of every later block, one matmul
    codes = torch.empty_like(Q)
    codes[:, perm] = Q  # back to the original column order
    return GroupQuant(codes.to(torch.uint8), scale.float(), zero.float(), bits, group_size)

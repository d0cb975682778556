"""Round-to-nearest quantizers as small pure functions: absmax, zero-point, group-wise.

Every quantizer maps floats to integers with a scale (and for asymmetric
schemes a zero point) and back::

    absmax (symmetric)     s = max|w| / 127             q = round(w / s)            w^ = s * q
    zero-point (asym.)     s = (max - min) / 255        z = round(-128 - min / s)    q = round(w / s) + z
                                                                                      w^ = s * (q - z)

The scale is taken over a *set* of values: the whole tensor (per-tensor), one
output row (per-channel), or ``group_size`` consecutive inputs of a row
(group-wise). Smaller sets follow the local range and lose less, at the cost
of storing more scales. The error of round-to-nearest is at most s / 2 for
values inside the range, which the tests check.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmkit.quantize.errors import QuantizationError

BITS = (2, 3, 4, 8)


def _safe(s: torch.Tensor) -> torch.Tensor:
    """A scale of 0 (all-zero set) becomes 1 so division is harmless; q is 0 there anyway."""
    return torch.where(s == 0, torch.ones_like(s), s)


def absmax_int8(w: torch.Tensor, per_channel: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """w (N, K) -> (q int8 (N, K) in [-127, 127], scale () or (N, 1))."""
    amax = w.abs().amax(dim=-1, keepdim=True) if per_channel else w.abs().amax()
    scale = amax.float() / 127
    q = torch.round(w / _safe(scale)).clamp(-127, 127).to(torch.int8)
    return q, scale


def zeropoint_int8(w: torch.Tensor, per_channel: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """w (N, K) -> (q int8 in [-128, 127], scale, zero) with w^ = scale * (q - zero).

    The range always includes 0, so an exact zero (padding, ReLU outputs) stays exact.
    """
    lo = w.amin(dim=-1, keepdim=True) if per_channel else w.amin()
    hi = w.amax(dim=-1, keepdim=True) if per_channel else w.amax()
    lo, hi = lo.clamp(max=0).float(), hi.clamp(min=0).float()
    scale = (hi - lo) / 255
    zero = torch.round(-128 - lo / _safe(scale)).clamp(-128, 127)
    q = (torch.round(w / _safe(scale)) + zero).clamp(-128, 127).to(torch.int8)
    return q, scale, zero


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None = None) -> torch.Tensor:
    """Inverse of absmax_int8 (zero None) and zeropoint_int8."""
    return scale * (q.float() - (zero if zero is not None else 0))


def check_group_size(in_features: int, group_size: int, name: str = "layer") -> None:
    if group_size <= 0 or in_features % group_size:
        raise QuantizationError(
            f"group size {group_size} does not divide the {in_features} input features of {name}",
            "choose a group size that divides it (a power of two such as 32 or 64)")


def check_bits(bits: int) -> None:
    if bits not in BITS:
        raise QuantizationError(f"bit width {bits} is not supported",
                                f"choose one of: {', '.join(map(str, BITS))}")


@dataclass
class GroupQuant:
    """Unsigned codes q (N, K) in [0, 2^bits - 1], scale and zero (N, K/G): w^ = scale * (q - zero)."""

    q: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    bits: int
    group_size: int

    def dequantize(self) -> torch.Tensor:
        N, K = self.q.shape
        G = self.group_size
        w = (self.q.float().reshape(N, K // G, G) - self.zero[..., None]) * self.scale[..., None]
        return w.reshape(N, K)


def group_params(w: torch.Tensor, bits: int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero of each row of w (..., G): the set of values one scale covers.

    symmetric: s = max|w| / (2^(b-1) - 1), z = 2^(b-1)  (codes centred, e.g. 1..15 around 8 for 4 bits)
    asymmetric: s = (max - min) / (2^b - 1), z = -min / s

    The asymmetric zero is not rounded to an integer (GGUF's Q4_1 does the
    same: it stores the minimum itself): weights need no exact 0, and a grid
    spanning exactly [min, max] loses less than one stretched to include 0.
    """
    qmax = 2**bits - 1
    if symmetric:
        scale = w.abs().amax(dim=-1) / (2 ** (bits - 1) - 1)
        zero = torch.full_like(scale, 2 ** (bits - 1))
    else:
        lo, hi = w.amin(dim=-1), w.amax(dim=-1)
        scale = (hi - lo) / qmax
        zero = -lo / _safe(scale.half().float())
    # scales are stored as fp16: quantize with the value that will be stored
    return scale.half().float(), zero


def quantize_with(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes for w (..., G) given per-row scale/zero (...): clamp(round(w / s + z), 0, 2^b - 1)."""
    q = torch.round(w / _safe(scale)[..., None] + zero[..., None])
    return q.clamp(0, 2**bits - 1)


def quantize_groupwise(w: torch.Tensor, bits: int = 4, group_size: int = 32, symmetric: bool = False,
                       name: str = "layer") -> GroupQuant:
    """w (N, K) -> GroupQuant, one scale/zero per ``group_size`` consecutive inputs of each row."""
    check_bits(bits)
    N, K = w.shape
    check_group_size(K, group_size, name)
    g = w.detach().float().reshape(N, K // group_size, group_size)  # (N, groups, G)
    scale, zero = group_params(g, bits, symmetric)
    q = quantize_with(g, scale, zero, bits).to(torch.uint8).reshape(N, K)
    return GroupQuant(q, scale, zero, bits, group_size)

"""Linear layers whose weights stay quantized in memory, and the decoding math of their formats.

At batch 1..8 a decode step is bound by how many weight bytes stream through
the CPU, so a quantized weight is never expanded to a full fp32 matrix on the
hot path: ``QuantLinear`` keeps int8 or packed 4-bit values plus per-group
scales and calls the C++ kernel (``qkernels``), which also rounds the
activations to int8 per 32 values (as llama.cpp does) so each block is an
integer dot product; ``q8_activations`` is the exact model of that rounding,
and the tests hold the kernel to it. Larger batches (prefill), other devices
and other dtypes dequantize the weight to ``x.dtype`` (bf16/fp16 on a GPU)
and use the regular matmul with unrounded activations.

The *encoders* (absmax, zero-point, group-wise, GPTQ, AWQ) live in
``llmkit.quantize``; this module owns the storage layout so the loader (which
sits below ``llmkit.quantize``) can rebuild a quantized checkpoint.

Affine group format, for every output row and group ``g`` of ``group_size`` inputs::

    w[n, k] = scale[n, g] * q[n, k] + min[n, g]        g = k // group_size

    bits=8: q int8 in [-128, 127], stored (N, K)       (min absent: symmetric absmax)
    bits=4: q in [0, 15], stored two per byte (N, K/2): in each 32-value block, byte j
            holds value j (low nibble) and value j + 16 (high nibble) — GGUF's order
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llmkit.model.qkernels import kernels

KERNEL_MAX_ROWS = 16  # above this many rows (prefill), dequantize once and use the regular GEMM
BLOCK = 32  # the kernel's block: group sizes are multiples of it


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """(N, K) values in [0, 15] -> (N, K/2) uint8 in GGUF block order (see module docstring)."""
    N, K = q.shape
    b = q.to(torch.uint8).reshape(N, K // BLOCK, 2, BLOCK // 2)  # (N, blocks, low/high half, 16)
    return (b[:, :, 0] | (b[:, :, 1] << 4)).reshape(N, K // 2)


def unpack_int4(p: torch.Tensor) -> torch.Tensor:
    """Inverse of pack_int4: (N, K/2) uint8 -> (N, K) uint8 values in [0, 15]."""
    N, H = p.shape
    b = p.reshape(N, H // (BLOCK // 2), BLOCK // 2)  # (N, blocks, 16)
    return torch.stack([b & 0x0F, b >> 4], dim=2).reshape(N, H * 2)


def dequantize_affine(q: torch.Tensor, scale: torch.Tensor, min: torch.Tensor | None,
                      group_size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """q (N, K) integer values, scale/min (N, K/G) -> w (N, K) = scale * q + min, in ``dtype``."""
    N, K = q.shape
    w = q.to(torch.float32).reshape(N, K // group_size, group_size) * scale.float()[..., None]  # (N, K/G, G)
    if min is not None:
        w = w + min.float()[..., None]
    return w.reshape(N, K).to(dtype)


def q8_activations(x: torch.Tensor) -> torch.Tensor:
    """x (M, K) -> x rounded as the kernel sees it: int8 per 32-value block, d = max|x| / 127.

    The kernel's result is ``q8_activations(x) @ (scale * q)^T + x @ min^T``: the
    integer part uses the rounded activations, the min part the exact ones.
    """
    b = x.float().reshape(x.shape[0], -1, BLOCK)  # (M, K/32, 32)
    d = b.abs().amax(dim=-1, keepdim=True) / 127
    q = torch.round(b / torch.where(d == 0, torch.ones_like(d), d))
    return (q * d).reshape(x.shape)


class _KeepFormat(nn.Module):
    def _apply(self, fn, recurse=True):
        # .to(dtype) must not touch the format: scales keep their stored dtype, only the device moves
        return super()._apply(lambda t: fn(t).to(t.dtype), recurse)


class QuantLinear(_KeepFormat):
    """y = x @ W^T + b with W in the affine group format (bits 4 or 8).

    ``exact_activations`` makes the kernel keep x in float (about half the
    speed per weight). The quantizers set it on the head: it picks the token,
    near-ties between the top two logits are common, and that is where
    rounding activations visibly changes greedy output.
    """

    exact_activations = False

    def __init__(self, in_features: int, out_features: int, bits: int, group_size: int, has_min: bool,
                 bias: bool = False, scale_dtype: torch.dtype = torch.float16, device=None):
        super().__init__()
        assert bits in (4, 8) and group_size % BLOCK == 0 and in_features % group_size == 0, \
            (bits, group_size, in_features)
        self.in_features, self.out_features, self.bits, self.group_size = in_features, out_features, bits, group_size
        cols, qdtype = (in_features // 2, torch.uint8) if bits == 4 else (in_features, torch.int8)
        groups = (out_features, in_features // group_size)
        self.register_buffer("qweight", torch.zeros(out_features, cols, dtype=qdtype, device=device))
        self.register_buffer("scale", torch.zeros(groups, dtype=scale_dtype, device=device))
        self.register_buffer("min", torch.zeros(groups, dtype=scale_dtype, device=device) if has_min else None)
        self.register_buffer("bias", torch.zeros(out_features, device=device) if bias else None)

    @classmethod
    def from_quantized(cls, q: torch.Tensor, scale: torch.Tensor, min: torch.Tensor | None, bits: int,
                       bias: torch.Tensor | None = None, scale_dtype: torch.dtype = torch.float16) -> "QuantLinear":
        """From integer values q (N, K) (int8 for bits=8, [0, 15] for bits=4) and scale/min (N, K/G)."""
        N, K = q.shape
        layer = cls(K, N, bits, K // scale.shape[1], min is not None, bias is not None, scale_dtype)
        layer.qweight.copy_(pack_int4(q) if bits == 4 else q.to(torch.int8))
        layer.scale.copy_(scale)
        if min is not None:
            layer.min.copy_(min)
        if bias is not None:
            layer.bias.copy_(bias.detach())
        return layer

    def spec(self) -> dict:
        """What the loader needs to rebuild this layer (stored in the checkpoint's meta.json)."""
        return {"kind": "affine", "bits": self.bits, "group_size": self.group_size, "has_min": self.min is not None,
                "scale_dtype": str(self.scale.dtype).removeprefix("torch."),
                "exact_activations": self.exact_activations}

    def int_values(self) -> torch.Tensor:
        return unpack_int4(self.qweight) if self.bits == 4 else self.qweight

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight (N, K) as a dense matrix (for other devices, large batches and tests).

        On CPU the compiled kernel expands it in one pass (the same values, about 3x faster than the
        torch ops, which matters because prefill re-expands every layer on every forward)."""
        k = kernels() if self.qweight.device.type == "cpu" else None
        if k is not None and hasattr(k, "dequantize"):
            w = k.dequantize(self.qweight, self.scale, self.min, self.group_size, self.bits)
            return w if dtype == torch.float32 else w.to(dtype)
        return dequantize_affine(self.int_values(), self.scale, self.min, self.group_size, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)  # (M, K)
        k = kernels() if x2.device.type == "cpu" and x2.dtype == torch.float32 \
            and x2.shape[0] <= KERNEL_MAX_ROWS and not (x2.requires_grad and torch.is_grad_enabled()) else None
        if k is not None:
            if self.bits == 4:
                y = k.q4_matmul(x2, self.qweight, self.scale, self.min, self.group_size, self.exact_activations)
            else:
                y = k.q8_matmul(x2, self.qweight, self.scale, self.min, self.group_size, self.exact_activations)
            if self.bias is not None:
                y += self.bias
        else:
            bias = self.bias.to(x2.dtype) if self.bias is not None else None
            y = F.linear(x2, self.dequantize(x2.dtype), bias)
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group_size={self.group_size}, asymmetric={self.min is not None}")


# ---- NF4 (QLoRA) -------------------------------------------------------------------------------


def nf4_codebook() -> torch.Tensor:
    """The 16 NF4 levels: quantiles of N(0, 1) scaled to [-1, 1], with an exact 0.

    Eight levels on the positive side and seven on the negative side (so zero is
    a level and the code is asymmetric), placed at evenly spaced probabilities
    between 1 - offset and offset; offset = 0.9677 is QLoRA's choice (the
    midpoint between the two outermost quantiles of 2 x 16 and 2 x 15 bins).
    """
    offset = 0.9677083
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])  # 8 values > 0
    neg = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])  # 7 values < 0
    levels = torch.cat([pos, torch.zeros(1, dtype=torch.float64), neg]).sort().values
    return (levels / levels.max()).float()


NF4 = nf4_codebook()
# (256, 2): the two levels a packed byte holds (low nibble, high nibble), so dequantizing is one gather per
# byte; indexing NF4 by every 4-bit code instead needs an int64 copy of the codes, 8 bytes per weight
NF4_PAIRS = torch.stack([NF4[torch.arange(256) & 0x0F], NF4[torch.arange(256) >> 4]], dim=1)
DQ_BLOCK = 256  # block of first-level scales that share one second-level scale (double quantization)


def nf4_encode(w: torch.Tensor, block_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """w (any shape, numel % block_size == 0) -> (codes (numel,) uint8 in [0, 15], absmax (blocks,) float32).

    Each block of ``block_size`` consecutive values is divided by its absmax and
    every value snaps to the nearest NF4 level.
    """
    blocks = w.detach().float().reshape(-1, block_size)  # (blocks, B)
    absmax = blocks.abs().amax(dim=1)
    x = blocks / torch.where(absmax == 0, torch.ones_like(absmax), absmax)[:, None]
    mid = (NF4[1:] + NF4[:-1]) / 2  # decision boundaries between neighbouring levels
    codes = torch.bucketize(x, mid).to(torch.uint8)
    return codes.reshape(-1), absmax


def double_quantize(absmax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """First-level scales (n,) fp32 -> (int8 (n,), scale per 256 (ceil(n/256),), mean ()).

    The scales are all positive and similar, so centre them on their mean
    first; then symmetric int8 absmax per block of 256 (QLoRA uses an 8-bit
    float code here; int8 costs the same 8 bits and is simpler to read).
    """
    mean = absmax.mean()
    c = absmax - mean
    n = c.numel()
    pad = (-n) % DQ_BLOCK
    blocks = F.pad(c, (0, pad)).reshape(-1, DQ_BLOCK)
    s = blocks.abs().amax(dim=1) / 127
    q = torch.round(blocks / torch.where(s == 0, torch.ones_like(s), s)[:, None]).to(torch.int8)
    return q.reshape(-1)[:n], s, mean


def double_dequantize(q: torch.Tensor, s: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    idx = torch.arange(q.numel(), device=q.device) // DQ_BLOCK
    return q.float() * s[idx] + mean


class _DequantMatmul(torch.autograd.Function):
    """y = x W^T with W dequantized in forward *and again in backward*, so autograd keeps no fp copy of W.

    Saving the dequantized weight for backward (what F.linear would do) would hold every layer's
    full-precision weight until the backward pass: the memory QLoRA exists to save.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: "NF4Linear") -> torch.Tensor:
        ctx.layer = layer
        return F.linear(x, layer.dequantize(x.dtype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad @ ctx.layer.dequantize(grad.dtype), None  # dL/dx = dL/dy W; the codes get no gradient


class NF4Linear(_KeepFormat):
    """A frozen NF4 weight (QLoRA's storage) with an ordinary, differentiable-in-x forward.

    The weight is dequantized to ``x.dtype`` on each call, so gradients flow to
    the input (and to a LoRA adapter put around it), never to the 4-bit codes.
    When the input needs a gradient, backward dequantizes again instead of
    keeping the full-precision weight alive (_DequantMatmul).
    """

    def __init__(self, in_features: int, out_features: int, block_size: int = 64, double_quant: bool = True,
                 bias: bool = False, device=None):
        super().__init__()
        n = in_features * out_features
        assert n % block_size == 0 and block_size % 2 == 0, (n, block_size)
        self.in_features, self.out_features, self.block_size = in_features, out_features, block_size
        self.double_quant = double_quant
        nb = n // block_size
        self.register_buffer("codes", torch.zeros(n // 2, dtype=torch.uint8, device=device))
        if double_quant:
            self.register_buffer("absmax_q", torch.zeros(nb, dtype=torch.int8, device=device))
            self.register_buffer("absmax_scale", torch.zeros(math.ceil(nb / DQ_BLOCK), device=device))
            self.register_buffer("absmax_mean", torch.zeros((), device=device))
        else:
            self.register_buffer("absmax", torch.zeros(nb, device=device))
        self.register_buffer("bias", torch.zeros(out_features, device=device) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, block_size: int = 64, double_quant: bool = True) -> "NF4Linear":
        w = linear.weight
        layer = cls(w.shape[1], w.shape[0], block_size, double_quant, linear.bias is not None, device=w.device)
        codes, absmax = nf4_encode(w, block_size)
        layer.codes.copy_(codes[0::2] | (codes[1::2] << 4))  # value 2i in the low nibble, 2i+1 in the high
        if double_quant:
            q, s, mean = double_quantize(absmax)
            layer.absmax_q.copy_(q)
            layer.absmax_scale.copy_(s)
            layer.absmax_mean.copy_(mean)
        else:
            layer.absmax.copy_(absmax)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer

    def spec(self) -> dict:
        return {"kind": "nf4", "block_size": self.block_size, "double_quant": self.double_quant}

    def block_absmax(self) -> torch.Tensor:
        if self.double_quant:
            return double_dequantize(self.absmax_q, self.absmax_scale, self.absmax_mean)
        return self.absmax

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight (N, K) = NF4[code] * its block's absmax; the only full-size temporary is an int32 index.

        ``dequantize_reference`` is the same math written plainly (the test oracle).
        """
        pairs = NF4_PAIRS.to(self.codes.device).index_select(0, self.codes.int())  # (N*K/2, 2): value 2i, 2i+1
        w = pairs.view(-1, self.block_size).mul_(self.block_absmax()[:, None])  # (blocks, B), scaled in place
        return w.view(self.out_features, self.in_features).to(dtype)

    def dequantize_reference(self) -> torch.Tensor:
        codes = torch.stack([self.codes & 0x0F, self.codes >> 4], dim=1).reshape(-1, self.block_size)  # (blocks, B)
        w = NF4.to(self.codes.device)[codes.long()] * self.block_absmax()[:, None]
        return w.reshape(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        if torch.is_grad_enabled() and x.requires_grad:
            y = _DequantMatmul.apply(x, self)
            return y + bias if bias is not None else y
        return F.linear(x, self.dequantize(x.dtype), bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"block_size={self.block_size}, double_quant={self.double_quant}")


def quant_layer_from_spec(spec: dict, in_features: int, out_features: int, bias: bool, device=None) -> nn.Module:
    """Rebuild an empty quantized layer from ``layer.spec()`` (the loader fills the buffers)."""
    if spec["kind"] == "nf4":
        return NF4Linear(in_features, out_features, spec["block_size"], spec["double_quant"], bias, device)
    assert spec["kind"] == "affine", spec
    layer = QuantLinear(in_features, out_features, spec["bits"], spec["group_size"], spec["has_min"], bias,
                        getattr(torch, spec["scale_dtype"]), device)
    layer.exact_activations = bool(spec.get("exact_activations", False))
    return layer

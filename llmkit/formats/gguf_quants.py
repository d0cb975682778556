"""GGML block formats: type table, dequantization to float32, and a few quantizers.

GGML stores a weight row as a sequence of *blocks*. A block packs a fixed
number of values (32 for the classic formats, 256 for the "k-quants") as small
integers plus one or more fp16 scales, so a row of ``n`` values occupies
``n // block_size * type_size`` bytes. Whole tensors are just rows laid end to
end, so a tensor is a flat run of blocks and dequantizing it never needs to
know the tensor's shape until the final ``reshape``.

Each ``dequant_<type>`` below is a small pure function from a
``(n_blocks, type_size)`` uint8 tensor to a ``(n_blocks, block_size)`` float32
tensor, written with whole-tensor torch ops (torch, not numpy, because torch's
elementwise kernels use every core). Their docstrings draw the byte layout.
The reference they are tested against is ``gguf.quants`` (gguf-py), and the
arithmetic order (``(d * sc) * q - dmin * m``...) follows ggml's so results are
bit-identical, not merely close.

Orientation: GGUF lists dimensions fastest-first (``ne[0]`` is the row
length), so a GGUF ``[576, 1536]`` weight is a torch ``(1536, 576)`` tensor.
Every ``shape`` in this module is the *torch* shape: the last dimension is the
row that blocks run along.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch

from llmkit.core.errors import FormatError

QK = 32  # values per block in the classic formats (Q4_0 ... Q8_0)
QK_K = 256  # values per super-block in the k-quants (Q2_K ... Q8_K)


@dataclass(frozen=True)
class GGMLType:
    """One ggml tensor type: its on-disk id, values per block and bytes per block."""

    name: str
    id: int
    block_size: int  # values per block
    type_size: int  # bytes per block

    def n_bytes(self, n_values: int) -> int:
        """Bytes needed for ``n_values`` values (must be whole blocks)."""
        assert n_values % self.block_size == 0, (self.name, n_values)
        return n_values // self.block_size * self.type_size


# Every type id ggml has assigned (ggml.h `enum ggml_type`); the gaps (4, 5:
# the removed Q4_2/Q4_3; 31-33: removed ARM-repacked Q4_0 variants) are unused.
# We know the sizes of all of them so a file's tensor data can be bounds-checked
# even for types we cannot dequantize; SUPPORTED says which ones we can.
_TYPE_LIST = [
    GGMLType("F32", 0, 1, 4),
    GGMLType("F16", 1, 1, 2),
    GGMLType("Q4_0", 2, QK, 2 + QK // 2),
    GGMLType("Q4_1", 3, QK, 2 + 2 + QK // 2),
    GGMLType("Q5_0", 6, QK, 2 + 4 + QK // 2),
    GGMLType("Q5_1", 7, QK, 2 + 2 + 4 + QK // 2),
    GGMLType("Q8_0", 8, QK, 2 + QK),
    GGMLType("Q8_1", 9, QK, 4 + 4 + QK),
    GGMLType("Q2_K", 10, QK_K, QK_K // 16 + QK_K // 4 + 2 + 2),
    GGMLType("Q3_K", 11, QK_K, QK_K // 8 + QK_K // 4 + 12 + 2),
    GGMLType("Q4_K", 12, QK_K, 2 + 2 + 12 + QK_K // 2),
    GGMLType("Q5_K", 13, QK_K, 2 + 2 + 12 + QK_K // 8 + QK_K // 2),
    GGMLType("Q6_K", 14, QK_K, QK_K // 2 + QK_K // 4 + QK_K // 16 + 2),
    GGMLType("Q8_K", 15, QK_K, 4 + QK_K + QK_K // 8),
    GGMLType("IQ2_XXS", 16, QK_K, 2 + QK_K // 4),
    GGMLType("IQ2_XS", 17, QK_K, 2 + QK_K // 4 + QK_K // 32),
    GGMLType("IQ3_XXS", 18, QK_K, 2 + QK_K // 4 + QK_K // 8),
    GGMLType("IQ1_S", 19, QK_K, 2 + QK_K // 8 + QK_K // 16),
    GGMLType("IQ4_NL", 20, QK, 2 + QK // 2),
    GGMLType("IQ3_S", 21, QK_K, 2 + QK_K // 4 + QK_K // 8 + QK_K // 32 + 4),
    GGMLType("IQ2_S", 22, QK_K, 2 + QK_K // 4 + QK_K // 16),
    GGMLType("IQ4_XS", 23, QK_K, 2 + 2 + QK_K // 2 + QK_K // 64),
    GGMLType("I8", 24, 1, 1),
    GGMLType("I16", 25, 1, 2),
    GGMLType("I32", 26, 1, 4),
    GGMLType("I64", 27, 1, 8),
    GGMLType("F64", 28, 1, 8),
    GGMLType("IQ1_M", 29, QK_K, QK_K // 8 + QK_K // 16 + QK_K // 32),
    GGMLType("BF16", 30, 1, 2),
    GGMLType("TQ1_0", 34, QK_K, 2 + 4 * 13),
    GGMLType("TQ2_0", 35, QK_K, 2 + 64),
    GGMLType("MXFP4", 39, QK, 1 + QK // 2),
]
GGML_TYPES: dict[str, GGMLType] = {t.name: t for t in _TYPE_LIST}
GGML_TYPES_BY_ID: dict[int, GGMLType] = {t.id: t for t in _TYPE_LIST}


def ggml_type(t: Union[int, str, GGMLType]) -> GGMLType:
    """Look a type up by id (``3``), name (``"Q4_1"``, any case) or enum member.

    Accepts ``gguf.GGMLQuantizationType`` members too (they are ints).
    Raises FormatError for ids and names ggml does not define.
    """
    if isinstance(t, GGMLType):
        return t
    if isinstance(t, str):
        found = GGML_TYPES.get(t.upper())
    else:
        found = GGML_TYPES_BY_ID.get(int(t))
    if found is None:
        raise FormatError(
            f"unknown ggml tensor type {t!r}",
            fix=f"use one of {', '.join(GGML_TYPES)}; a newer llama.cpp type needs a newer llmkit",
        )
    return found


# ---------------------------------------------------------------------------
# Small helpers shared by the block decoders. `b` is always (n_blocks, type_size) uint8.


def _f16(b: torch.Tensor, at: int) -> torch.Tensor:
    """The fp16 stored at byte offset ``at`` of every block, as (n_blocks, 1) float32."""
    return b[:, at : at + 2].contiguous().view(torch.float16).float()


def _f32(b: torch.Tensor, at: int) -> torch.Tensor:
    """The fp32 stored at byte offset ``at`` of every block, as (n_blocks, 1) float32."""
    return b[:, at : at + 4].contiguous().view(torch.float32)


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """(n, k) packed bytes -> (n, 2k) values: all low nibbles first, then all high.

    This is how the classic formats order a block: byte ``j`` holds value ``j``
    in its low nibble and value ``j + k`` in its high nibble.
    """
    return torch.cat([qs & 0x0F, qs >> 4], dim=-1)


def _bits(packed: torch.Tensor, n_bits: int = 8) -> torch.Tensor:
    """(..., k) bytes -> (..., k * 8) single bits, least-significant bit first.

    For a little-endian bitfield this puts bit ``i`` of the field at index ``i``.
    """
    shifts = torch.arange(n_bits, dtype=torch.uint8)
    return ((packed.unsqueeze(-1) >> shifts) & 1).flatten(-2)


# ---------------------------------------------------------------------------
# Classic 32-value blocks.


def dequant_q8_0(b: torch.Tensor) -> torch.Tensor:
    """Q8_0, 34 bytes per 32 values: ``d: f16 | qs: int8[32]``;  x = d * q."""
    return b[:, 2:].view(torch.int8).float() * _f16(b, 0)


def dequant_q4_0(b: torch.Tensor) -> torch.Tensor:
    """Q4_0, 18 bytes per 32 values: ``d: f16 | qs: u8[16]``;  x = d * (q - 8).

    ``qs[j]`` holds value ``j`` in its low nibble and value ``j + 16`` in its high nibble.
    """
    q = _nibbles(b[:, 2:]).to(torch.int8) - 8  # (n, 32) in [-8, 7]
    return _f16(b, 0) * q.float()


def dequant_q4_1(b: torch.Tensor) -> torch.Tensor:
    """Q4_1, 20 bytes per 32 values: ``d: f16 | m: f16 | qs: u8[16]``;  x = d * q + m.

    Same nibble order as Q4_0, but unsigned with an explicit minimum ``m``.
    """
    n = b.shape[0]
    out = torch.empty(n, 2, QK // 2)  # (n, nibble, 16): one write, no torch.cat temporary
    qs = b[:, 4:]
    out[:, 0] = qs & 0x0F
    out[:, 1] = qs >> 4
    out = out.view(n, QK)
    return out.mul_(_f16(b, 0)).add_(_f16(b, 2))


def _q5_values(b: torch.Tensor, qh_at: int) -> torch.Tensor:
    """The 5-bit values of Q5_0/Q5_1: a nibble from ``qs`` plus a fifth bit from ``qh``.

    ``qh`` is a little-endian u32 whose bit ``j`` is the high bit of value ``j``.
    """
    low = _nibbles(b[:, qh_at + 4 :])  # (n, 32)
    high = _bits(b[:, qh_at : qh_at + 4])  # (n, 32)
    return low | (high << 4)


def dequant_q5_0(b: torch.Tensor) -> torch.Tensor:
    """Q5_0, 22 bytes per 32 values: ``d: f16 | qh: u32 | qs: u8[16]``;  x = d * (q - 16)."""
    q = _q5_values(b, 2).to(torch.int8) - 16  # (n, 32) in [-16, 15]
    return _f16(b, 0) * q.float()


def dequant_q5_1(b: torch.Tensor) -> torch.Tensor:
    """Q5_1, 24 bytes per 32 values: ``d: f16 | m: f16 | qh: u32 | qs: u8[16]``;  x = d * q + m."""
    return _f16(b, 0) * _q5_values(b, 4).float() + _f16(b, 2)


# ---------------------------------------------------------------------------
# k-quants: 256-value super-blocks split into 16 or 8 sub-blocks with their own
# small integer scales, themselves scaled by fp16 super-block scales.


def _crumbs(qs: torch.Tensor) -> torch.Tensor:
    """(n, 64) bytes -> (n, 256) 2-bit values in k-quant order.

    Two halves of 128 values each read 32 bytes; inside a half, value
    ``32 * j + l`` is bits ``2j..2j+1`` of byte ``l``.
    """
    shifts = torch.arange(0, 8, 2, dtype=torch.uint8).view(4, 1)
    halves = qs.view(-1, 2, 1, 32)  # (n, half, 1, byte)
    return ((halves >> shifts) & 3).view(-1, QK_K)  # (n, half, shift, byte) -> (n, 256)


def dequant_q2_k(b: torch.Tensor) -> torch.Tensor:
    """Q2_K, 84 bytes per 256 values: ``scales: u8[16] | qs: u8[64] | d: f16 | dmin: f16``.

    16 sub-blocks of 16 values; ``scales[i]`` holds the 4-bit scale (low
    nibble) and 4-bit min (high nibble) of sub-block ``i``;
    x = (d * scale) * q - (dmin * min), q the 2-bit value (order: see ``_crumbs``).
    """
    sc = b[:, :16]
    dl = (_f16(b, 80) * (sc & 0x0F).float()).unsqueeze(-1)  # (n, 16, 1)
    ml = (_f16(b, 82) * (sc >> 4).float()).unsqueeze(-1)  # (n, 16, 1)
    q = _crumbs(b[:, 16:80]).view(-1, 16, 16).float()
    return (dl * q - ml).flatten(1)


def _q3_k_scales(s: torch.Tensor) -> torch.Tensor:
    """12 bytes -> 16 signed 6-bit scales (stored with +32 offset).

    Low 4 bits of scale ``i``: byte ``i`` low nibble for i < 8, byte ``i - 8``
    high nibble for i >= 8. High 2 bits: byte ``8 + i % 4``, bits ``2 * (i // 4)``.
    """
    low = torch.cat([s[:, :8] & 0x0F, s[:, :8] >> 4], dim=1)  # (n, 16)
    shifts = torch.arange(0, 8, 2, dtype=torch.uint8).view(4, 1)
    high = ((s[:, 8:12].unsqueeze(1) >> shifts) & 3).flatten(1)  # (n, 16)
    return (low | (high << 4)).to(torch.int8) - 32


def dequant_q3_k(b: torch.Tensor) -> torch.Tensor:
    """Q3_K, 110 bytes per 256 values: ``hmask: u8[32] | qs: u8[64] | scales: u8[12] | d: f16``.

    16 sub-blocks of 16 values with 6-bit signed scales. The 2 low bits of each
    value come from ``qs`` as in Q2_K; the third bit is bit ``k`` of
    ``hmask[l]`` for value ``32 * k + l`` and is stored *inverted* (a clear bit
    subtracts 4): x = (d * scale) * (q2 - 4 * (1 - hbit)).
    """
    q2 = _crumbs(b[:, 32:96])  # (n, 256)
    hbit = _bits(b[:, :32]).view(-1, 32, 8).transpose(1, 2).reshape(-1, QK_K)  # (n, bit, l)
    q = q2.to(torch.int8) + 4 * hbit.to(torch.int8) - 4  # (n, 256) in [-4, 3]
    dl = (_f16(b, 108) * _q3_k_scales(b[:, 96:108]).float()).unsqueeze(-1)  # (n, 16, 1)
    return (dl * q.view(-1, 16, 16).float()).flatten(1)


def _k4_scales_mins(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_K/Q5_K: 12 bytes -> 8 six-bit scales and 8 six-bit mins.

    Sub-blocks 0-3 use the low 6 bits of bytes 0-3 (scales) and 4-7 (mins);
    sub-blocks 4-7 take a nibble of bytes 8-11 (low: scale, high: min) plus
    the top 2 bits of bytes 0-3 (scale) and 4-7 (min).
    """
    a, b_, c = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    scales = torch.cat([a & 63, (c & 0x0F) | ((a >> 6) << 4)], dim=1)  # (n, 8)
    mins = torch.cat([b_ & 63, (c >> 4) | ((b_ >> 6) << 4)], dim=1)  # (n, 8)
    return scales, mins


def _k4_nibbles(qs: torch.Tensor) -> torch.Tensor:
    """(n, 128) bytes -> (n, 8, 32): chunk ``c`` of 32 bytes holds sub-block 2c
    in its low nibbles and sub-block 2c + 1 in its high nibbles."""
    chunks = qs.view(-1, 4, 1, 32)
    return torch.cat([chunks & 0x0F, chunks >> 4], dim=2).view(-1, 8, 32)


def _k4_affine(b: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """x = (d * scale) * q - (dmin * min) for Q4_K/Q5_K; ``q`` is (n, 8, 32)."""
    sc, m = _k4_scales_mins(b[:, 4:16])
    d = (_f16(b, 0) * sc.float()).unsqueeze(-1)  # (n, 8, 1)
    dm = (_f16(b, 2) * m.float()).unsqueeze(-1)  # (n, 8, 1)
    return (d * q.float() - dm).flatten(1)


def dequant_q4_k(b: torch.Tensor) -> torch.Tensor:
    """Q4_K, 144 bytes per 256 values: ``d: f16 | dmin: f16 | scales: u8[12] | qs: u8[128]``.

    8 sub-blocks of 32 values with 6-bit scales and mins (see ``_k4_scales_mins``).
    """
    return _k4_affine(b, _k4_nibbles(b[:, 16:144]))


def dequant_q5_k(b: torch.Tensor) -> torch.Tensor:
    """Q5_K, 176 bytes per 256 values: ``d | dmin | scales: u8[12] | qh: u8[32] | qs: u8[128]``.

    As Q4_K plus a fifth bit: bit ``s`` of ``qh[l]`` is the high bit of value
    ``l`` of sub-block ``s``.
    """
    low = _k4_nibbles(b[:, 48:176])  # (n, 8, 32)
    high = _bits(b[:, 16:48]).view(-1, 32, 8).transpose(1, 2)  # (n, sub-block, l)
    return _k4_affine(b, low | (high << 4))


def dequant_q6_k(b: torch.Tensor) -> torch.Tensor:
    """Q6_K, 210 bytes per 256 values: ``ql: u8[128] | qh: u8[64] | scales: i8[16] | d: f16``.

    16 sub-blocks of 16 values with signed 8-bit scales; x = (d * scale) * (q - 32).
    Each half of 128 values reads 64 ``ql`` bytes and 32 ``qh`` bytes: value
    ``32 * k + l`` takes nibble ``k // 2`` of ``ql[32 * (k % 2) + l]`` and bits
    ``2k..2k+1`` of ``qh[l]``.
    """
    ql = b[:, :128].view(-1, 2, 1, 2, 32)  # (n, half, 1, k % 2, l)
    low = torch.cat([ql & 0x0F, ql >> 4], dim=2).view(-1, 2, 4, 32)  # (n, half, k, l)
    shifts = torch.arange(0, 8, 2, dtype=torch.uint8).view(4, 1)
    high = (b[:, 128:192].view(-1, 2, 1, 32) >> shifts) & 3  # (n, half, k, l)
    q = (low | (high << 4)).to(torch.int8) - 32  # in [-32, 31]
    d = (_f16(b, 208) * b[:, 192:208].view(torch.int8).float()).unsqueeze(-1)  # (n, 16, 1)
    return (d * q.view(-1, 16, 16).float()).flatten(1)


def dequant_q8_k(b: torch.Tensor) -> torch.Tensor:
    """Q8_K, 292 bytes per 256 values: ``d: f32 | qs: i8[256] | bsums: i16[16]``;  x = d * q.

    ``bsums`` (sums of each 16 values) only speed up ggml's dot products.
    """
    return b[:, 4:260].view(torch.int8).float() * _f32(b, 0)


# ---------------------------------------------------------------------------
# Plain floats: "blocks" of one value.


def dequant_f32(b: torch.Tensor) -> torch.Tensor:
    """F32: little-endian IEEE float32."""
    return b.contiguous().view(torch.float32).clone()  # clone: never alias the (read-only) file


def dequant_f16(b: torch.Tensor) -> torch.Tensor:
    """F16: little-endian IEEE half."""
    return b.contiguous().view(torch.float16).float()


def dequant_bf16(b: torch.Tensor) -> torch.Tensor:
    """BF16: the top 16 bits of a float32, so widening is a 16-bit shift (bit-exact, NaNs kept)."""
    return (b.contiguous().view(torch.int16).to(torch.int32) << 16).view(torch.float32)


DEQUANTIZERS = {
    "F32": dequant_f32,
    "F16": dequant_f16,
    "BF16": dequant_bf16,
    "Q8_0": dequant_q8_0,
    "Q4_0": dequant_q4_0,
    "Q4_1": dequant_q4_1,
    "Q5_0": dequant_q5_0,
    "Q5_1": dequant_q5_1,
    "Q2_K": dequant_q2_k,
    "Q3_K": dequant_q3_k,
    "Q4_K": dequant_q4_k,
    "Q5_K": dequant_q5_k,
    "Q6_K": dequant_q6_k,
    "Q8_K": dequant_q8_k,
}
SUPPORTED: frozenset[str] = frozenset(DEQUANTIZERS)

RawBytes = Union[np.ndarray, bytes, bytearray, memoryview, torch.Tensor]


def _as_uint8_tensor(raw: RawBytes) -> torch.Tensor:
    """A flat uint8 torch view of ``raw`` without copying where possible."""
    if isinstance(raw, torch.Tensor):
        return raw.reshape(-1).view(torch.uint8)
    arr = np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw
    arr = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    with warnings.catch_warnings():
        # Memory-mapped files are read-only; torch warns because it could write
        # through the view. We never do: every decoder returns a new tensor.
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr)


def _check_shape(t: GGMLType, shape: tuple[int, ...]) -> int:
    """Number of values in ``shape``; the row (last dim) must be whole blocks."""
    if any(d < 0 for d in shape):
        raise FormatError(f"negative dimension in tensor shape {shape}")
    row = shape[-1] if shape else 1
    if row % t.block_size:
        raise FormatError(
            f"{t.name} rows must be a multiple of {t.block_size} values, got shape {shape}",
            fix="the last (row) dimension is in torch orientation: reverse GGUF's dims",
        )
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def dequantize(raw: RawBytes, ggml_type_: Union[int, str], shape) -> torch.Tensor:
    """Packed GGML bytes -> float32 tensor of torch ``shape``.

    ``shape`` is in torch orientation (GGUF dims reversed), so
    ``dequantize(*gguf_file.raw(name))`` returns the weight ready for a
    ``nn.Linear``. Raises FormatError for unknown or unsupported types and
    for byte counts that do not match the shape.
    """
    t = ggml_type(ggml_type_)
    shape = tuple(int(d) for d in shape)
    if t.name not in SUPPORTED:
        raise FormatError(
            f"ggml tensor type {t.name} is not supported for dequantization",
            fix=f"re-quantize the model to one of {', '.join(sorted(SUPPORTED))} (llama-quantize)",
        )
    n_values = _check_shape(t, shape)
    data = _as_uint8_tensor(raw)
    expected = t.n_bytes(n_values)
    if data.numel() != expected:
        raise FormatError(
            f"{t.name} tensor of shape {shape} needs {expected} bytes, got {data.numel()}",
            fix="the file is truncated or the type/shape do not belong to this data",
        )
    blocks = data.view(-1, t.type_size)  # (n_blocks, bytes per block)
    return DEQUANTIZERS[t.name](blocks).reshape(shape)


# ---------------------------------------------------------------------------
# Quantizers: round-to-nearest exactly as ggml's reference (`quantize_row_*_ref`)
# does it, so files we write are byte-identical to llama.cpp's / gguf-py's.


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C ``roundf``: halves go away from zero (torch.round goes to even).

    ``floor(|x| + 0.5)`` would be wrong for 0.49999997 (the sum rounds up to 1.0),
    so compare the exact fractional part instead.
    """
    a = x.abs()
    fl = a.floor()
    return torch.copysign(fl + (a - fl >= 0.5).float(), x)


def _blocks_of(x: torch.Tensor, t: GGMLType) -> torch.Tensor:
    x = torch.as_tensor(x).float()
    _check_shape(t, tuple(x.shape))
    return x.reshape(-1, t.block_size)


def _inverse(d: torch.Tensor) -> torch.Tensor:
    """1 / d, with 0 where d == 0 (an all-zero block)."""
    return torch.where(d == 0, torch.zeros_like(d), 1.0 / d)


def _f16_bytes(d: torch.Tensor) -> torch.Tensor:
    """(n, 1) float32 -> (n, 2) uint8 little-endian fp16."""
    return d.to(torch.float16).view(torch.uint8)


def _pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """(n, 32) values < 16 -> (n, 16) bytes; inverse of ``_nibbles``."""
    return q[:, : QK // 2] | (q[:, QK // 2 :] << 4)


def quantize_q8_0(blocks: torch.Tensor) -> torch.Tensor:
    """(n, 32) float32 -> (n, 34) Q8_0 bytes: d = max|x| / 127, q = round(x / d)."""
    d = blocks.abs().amax(dim=1, keepdim=True) / 127
    q = _round_half_away(blocks * _inverse(d)).to(torch.int8).view(torch.uint8)
    return torch.cat([_f16_bytes(d), q], dim=1)


def quantize_q4_0(blocks: torch.Tensor) -> torch.Tensor:
    """(n, 32) float32 -> (n, 18) Q4_0 bytes.

    d = m / -8 where m is the value of largest magnitude (sign kept, so it maps
    to -8 exactly); q = min(15, trunc(x / d + 8.5)).
    """
    idx = blocks.abs().argmax(dim=1, keepdim=True)
    d = blocks.gather(1, idx) / -8
    q = torch.trunc(blocks * _inverse(d) + 8.5).clamp(0, 15).to(torch.uint8)
    return torch.cat([_f16_bytes(d), _pack_nibbles(q)], dim=1)


def quantize_q4_1(blocks: torch.Tensor) -> torch.Tensor:
    """(n, 32) float32 -> (n, 20) Q4_1 bytes: d = (max - min) / 15, q = min(15, trunc((x - min) / d + 0.5))."""
    lo = blocks.amin(dim=1, keepdim=True)
    d = (blocks.amax(dim=1, keepdim=True) - lo) / 15
    q = torch.trunc((blocks - lo) * _inverse(d) + 0.5).clamp(0, 15).to(torch.uint8)
    return torch.cat([_f16_bytes(d), _f16_bytes(lo), _pack_nibbles(q)], dim=1)


QUANTIZERS = {"Q8_0": quantize_q8_0, "Q4_0": quantize_q4_0, "Q4_1": quantize_q4_1}


def quantize(x: torch.Tensor, ggml_type_: Union[int, str]) -> np.ndarray:
    """Float tensor (torch orientation) -> packed GGML bytes, shape ``(*x.shape[:-1], row_bytes)``.

    That is the byte layout ``gguf.GGUFWriter.add_tensor(..., raw_dtype=...)``
    expects. F32/F16/BF16 and Q8_0/Q4_0/Q4_1 are supported.
    """
    t = ggml_type(ggml_type_)
    x = torch.as_tensor(x).detach().cpu()
    lead = tuple(x.shape[:-1]) if x.dim() else ()
    if t.name in ("F32", "F16", "BF16"):
        dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[t.name]
        packed = x.to(dtype).contiguous().view(torch.uint8)
    elif t.name in QUANTIZERS:
        packed = QUANTIZERS[t.name](_blocks_of(x, t))
    else:
        raise FormatError(
            f"quantizing to {t.name} is not supported",
            fix=f"use one of F32, F16, BF16, {', '.join(QUANTIZERS)}",
        )
    return packed.reshape(*lead, -1).numpy()

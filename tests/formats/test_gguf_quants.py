"""GGML block (de)quantization checked against gguf-py's reference implementation."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

import gguf as gguf  # a test extra: missing must fail, not skip
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType  # noqa: E402

from llmkit.core.errors import FormatError  # noqa: E402
from llmkit.formats import gguf_quants as Q  # noqa: E402

# Byte offsets of the fp16 scale fields in each block: random bytes there could
# be inf/NaN, which makes comparisons meaningless, so tests overwrite them.
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}
# Types gguf-py can also *quantize*, so we can test on realistic blocks too.
GGUF_QUANTIZABLE = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]


def random_blocks(name: str, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Random packed bytes for ``name`` with finite scale fields (flat uint8)."""
    t = Q.GGML_TYPES[name]
    raw = rng.integers(0, 256, size=(n_blocks, t.type_size), dtype=np.uint8)
    scales = rng.uniform(-2.0, 2.0, size=(n_blocks, 2)).astype(np.float16).view(np.uint8)
    for i, at in enumerate(F16_FIELDS.get(name, [])):
        raw[:, at : at + 2] = scales[:, 2 * i : 2 * i + 2]
    if name == "Q8_K":  # f32 scale
        raw[:, 0:4] = rng.uniform(-2, 2, size=(n_blocks, 1)).astype(np.float32).view(np.uint8)
    return raw.reshape(-1)


def reference(raw: np.ndarray, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """gguf-py's dequantization, reshaped to the torch ``shape``."""
    qtype = GGMLQuantizationType[name]
    block, size = GGML_QUANT_SIZES[qtype]
    rows = raw.reshape(-1, shape[-1] // block * size)
    return np.asarray(gguf.quants.dequantize(rows, qtype), dtype=np.float32).reshape(shape)


def assert_same(ours: torch.Tensor, ref: np.ndarray) -> None:
    assert ours.dtype == torch.float32
    assert tuple(ours.shape) == ref.shape
    np.testing.assert_array_equal(ours.numpy(), ref)  # bit-exact (NaN == NaN)


def test_type_table_matches_gguf_constants():
    for t in Q.GGML_TYPES.values():
        qtype = GGMLQuantizationType[t.name]
        assert qtype.value == t.id
        assert GGML_QUANT_SIZES[qtype] == (t.block_size, t.type_size), t.name


@pytest.mark.parametrize("name", sorted(Q.SUPPORTED - {"Q8_K"}))
def test_dequantize_random_blocks_matches_gguf(name):
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # hash() is salted per process
    t = Q.GGML_TYPES[name]
    shape = (3, 4 * max(t.block_size, 32))  # torch orientation: 3 rows of 4 blocks (or 128 floats)
    raw = random_blocks(name, 3 * shape[1] // t.block_size, rng)
    with np.errstate(all="ignore"):  # random F16/BF16/F32 bytes include NaN and inf
        ref = reference(raw, name, shape)
    assert_same(Q.dequantize(raw, name, shape), ref)


@pytest.mark.parametrize("name", GGUF_QUANTIZABLE)
def test_dequantize_gguf_quantized_floats(name):
    x = np.random.default_rng(1).standard_normal((5, 256)).astype(np.float32)
    packed = gguf.quants.quantize(x, GGMLQuantizationType[name])
    raw = np.ascontiguousarray(packed).view(np.uint8).reshape(-1)
    assert_same(Q.dequantize(raw, name, x.shape), reference(raw, name, x.shape))


def slow_q8_k(raw: np.ndarray) -> np.ndarray:
    """Obvious per-block oracle for Q8_K (gguf-py has no Q8_K dequantizer)."""
    out = []
    for block in raw.reshape(-1, 292):
        d = block[:4].view(np.float32)[0]
        out.append(block[4:260].view(np.int8).astype(np.float32) * d)
    return np.concatenate(out)


def test_dequantize_q8_k_matches_oracle():
    raw = random_blocks("Q8_K", 6, np.random.default_rng(2))
    assert_same(Q.dequantize(raw, "Q8_K", (3, 512)), slow_q8_k(raw).reshape(3, 512))


def test_dequantize_accepts_bytes_ids_and_tensors():
    raw = random_blocks("Q4_1", 4, np.random.default_rng(3))
    want = Q.dequantize(raw, "Q4_1", (2, 64))
    torch.testing.assert_close(Q.dequantize(raw.tobytes(), 3, (2, 64)), want, rtol=0, atol=0)
    torch.testing.assert_close(Q.dequantize(torch.from_numpy(raw), GGMLQuantizationType.Q4_1, [2, 64]), want,
                               rtol=0, atol=0)


def test_dequantize_returns_writable_copy_of_f32():
    raw = np.arange(8, dtype=np.float32).view(np.uint8)
    raw.setflags(write=False)
    out = Q.dequantize(raw, "F32", (2, 4))
    out += 1  # must not touch (or fail on) the read-only source
    assert raw.view(np.float32)[0] == 0 and out[0, 0] == 1


@pytest.mark.parametrize("bad", [99, "Q9_9"])
def test_unknown_type_is_format_error(bad):
    with pytest.raises(FormatError, match=str(bad)):
        Q.dequantize(b"\0" * 18, bad, (32,))


def test_unsupported_type_names_it():
    t = Q.GGML_TYPES["IQ2_XXS"]
    with pytest.raises(FormatError, match="IQ2_XXS"):
        Q.dequantize(b"\0" * t.type_size, "IQ2_XXS", (256,))


def test_wrong_byte_count_and_partial_block_are_format_errors():
    with pytest.raises(FormatError, match="needs 40 bytes, got 39"):
        Q.dequantize(b"\0" * 39, "Q4_1", (64,))
    with pytest.raises(FormatError, match="multiple of 32"):
        Q.dequantize(b"\0" * 20, "Q4_1", (32, 1))  # GGUF orientation by mistake


def test_round_half_away_from_zero_known_values():
    x = torch.tensor([0.5, -0.5, 1.5, 2.5, -2.5, 0.49999997, 126.5, 0.0])
    assert Q._round_half_away(x).tolist() == [1.0, -1.0, 2.0, 3.0, -3.0, 0.0, 127.0, 0.0]


def tricky_blocks() -> np.ndarray:
    """Random rows plus the edge cases quantizers get wrong: zeros, constants, ties."""
    rng = np.random.default_rng(4)
    rows = [rng.standard_normal(64).astype(np.float32) * s for s in (1e-3, 1.0, 300.0)]
    rows.append(np.zeros(64, np.float32))  # d == 0
    rows.append(np.full(64, 3.25, np.float32))  # max == min
    ties = np.arange(-31.5, 32.5, 1.0, dtype=np.float32)  # x / d lands on .5 for Q8_0
    ties[-1] = 127.0
    rows.append(ties)
    rows.append(-np.abs(rng.standard_normal(64)).astype(np.float32))  # largest magnitude negative
    return np.stack(rows)


@pytest.mark.parametrize("name", ["Q8_0", "Q4_0", "Q4_1", "F32", "F16", "BF16"])
def test_quantize_is_byte_identical_to_gguf(name):
    x = tricky_blocks()
    ours = Q.quantize(torch.from_numpy(x), name)
    ref = np.ascontiguousarray(gguf.quants.quantize(x, GGMLQuantizationType[name])).view(np.uint8)
    assert ours.dtype == np.uint8 and ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("name", ["Q8_0", "Q4_0", "Q4_1"])
def test_quantize_dequantize_round_trip_error_is_bounded(name):
    x = torch.randn(4, 128, generator=torch.Generator().manual_seed(0))
    back = Q.dequantize(Q.quantize(x, name), name, x.shape)
    step = {"Q8_0": 1 / 127, "Q4_0": 1 / 8, "Q4_1": 1 / 15}[name]  # one step, relative to the block range
    span = x.view(-1, 32).abs().amax(1, keepdim=True) * 2
    assert ((back - x).view(-1, 32).abs() <= span * step).all()


def test_quantize_unsupported_type_is_format_error():
    with pytest.raises(FormatError, match="Q6_K"):
        Q.quantize(torch.zeros(256), "Q6_K")

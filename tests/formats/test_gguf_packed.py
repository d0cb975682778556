"""GGUF weights kept packed: each layer dequantizes bit-for-bit to what the float loader gives."""

import numpy as np
import pytest
import torch

from llmkit.formats.gguf_packed import split_blocks
from llmkit.formats.gguf_quants import dequantize
from llmkit.formats.loader import load_model
from llmkit.model.qlinear import QuantLinear


def random_blocks(ggml_type, n_blocks, size, seed=0):
    rng = np.random.default_rng(seed)
    b = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    n_scales = {"Q8_0": 1, "Q4_0": 1, "Q4_1": 2, "Q4_K": 2}[ggml_type]
    scales = rng.uniform(-0.05, 0.05, (n_blocks, n_scales)).astype(np.float16)  # finite fp16 scales
    b[:, : 2 * n_scales] = scales.view(np.uint8)
    return b.reshape(-1)


@pytest.mark.parametrize("ggml_type,size,block", [("Q8_0", 34, 32), ("Q4_0", 18, 32), ("Q4_1", 20, 32),
                                                  ("Q4_K", 144, 256)])
def test_split_blocks_dequantizes_exactly(ggml_type, size, block):
    N, K = 6, 512
    raw = random_blocks(ggml_type, N * K // block, size)
    parts = split_blocks(raw, ggml_type, (N, K))
    bits = 8 if ggml_type == "Q8_0" else 4
    layer = QuantLinear.from_quantized(
        parts["qweight"] if bits == 8 else torch.zeros(N, K, dtype=torch.uint8), parts["scale"], parts.get("min"),
        bits, scale_dtype=parts["scale"].dtype)
    if bits == 4:
        layer.qweight.copy_(parts["qweight"])
    ref = dequantize(raw, ggml_type, (N, K))
    torch.testing.assert_close(layer.dequantize(), ref, atol=1e-6, rtol=1e-6)
    x = torch.randn(2, K)
    with torch.no_grad():
        y, exact = layer(x), x @ ref.T
    assert (y - exact).norm() / exact.norm() < 0.02  # the kernel rounds activations to int8 (see qlinear)


@pytest.fixture(scope="module")
def packed_smollm2():
    return load_model("smollm2", device="cpu", dtype="float32", keep_quantized=True)


def test_smollm2_runs_packed(packed_smollm2, smollm2):
    m = packed_smollm2.model
    assert isinstance(m.blocks[0].attn.wq, QuantLinear) and m.blocks[0].attn.wq.bits == 4  # Q4_1
    assert isinstance(m.lm_head, QuantLinear) and m.lm_head.bits == 8  # tied Q8_0 embedding
    for name in ("blocks.0.attn.wq", "blocks.0.attn.wk", "blocks.29.mlp.w_down", "lm_head"):
        assert torch.equal(m.get_submodule(name).dequantize(), smollm2.model.get_submodule(name).weight)
    ids = torch.tensor([smollm2.tokenizer.encode("The capital of France is")])
    with torch.no_grad():
        a, b = m(ids), smollm2.model(ids)  # a few rows: the kernel, with int8-rounded activations
        long = torch.tensor([smollm2.tokenizer.encode("The capital of France is Paris. " * 4)])
        torch.testing.assert_close(m(long), smollm2.model(long), atol=2e-3, rtol=1e-3)  # prefill: exact weights
    # int8 activations add ~1-7 % error per layer; over 30 layers the next-token choice must survive.
    # The relative logit error over 8 short prompts spans 0.01-0.25, and which prompt lands where moves
    # with the kernel's float summation order (a code at a rounding boundary flips), so the bound is 0.3.
    assert (a[0, -1] - b[0, -1]).norm() / b[0, -1].norm() < 0.3
    assert a[0, -1].argmax() == b[0, -1].argmax()


def test_smollm2_packed_greedy_tokens_match_float(packed_smollm2, smollm2):
    from llmkit.generate import Engine, SamplingParams
    from llmkit.generate.api import prompt_ids

    p = prompt_ids(smollm2, "What is the capital of France?", chat=True)
    params = SamplingParams(max_tokens=16, temperature=0, ignore_eos=True)
    a = Engine(packed_smollm2.model, packed_smollm2.tokenizer).generate([p], params)[0].token_ids
    b = Engine(smollm2.model, smollm2.tokenizer).generate([p], params)[0].token_ids
    assert a == b


@pytest.mark.parametrize("bits,group,sym,half", [(4, 32, False, True), (4, 64, True, False), (8, 32, False, True),
                                                 (8, 576, True, False)])
def test_kernel_dequantize_equals_torch(bits, group, sym, half):
    from llmkit.model.qkernels import kernels
    from llmkit.model.qlinear import dequantize_affine

    assert kernels() is not None, "the quantized CPU kernel did not build (needs gcc and AVX2/FMA/F16C)"
    gen = torch.Generator().manual_seed(bits + group)
    N, K = 40, 576
    q = torch.randint(0, 16, (N, K), generator=gen) if bits == 4 else torch.randint(-128, 128, (N, K), generator=gen)
    dt = torch.float16 if half else torch.float32
    scale = (torch.rand(N, K // group, generator=gen) * 0.01).to(dt)
    mn = None if sym else (torch.randn(N, K // group, generator=gen) * 0.01).to(dt)
    layer = QuantLinear.from_quantized(q, scale, mn, bits, scale_dtype=dt)
    # the kernel's one-pass expansion and the torch ops give the same floats, bit for bit
    assert torch.equal(layer.dequantize(), dequantize_affine(layer.int_values(), layer.scale, layer.min, group))


def test_weights_choice_and_auto_default():
    from llmkit.core.errors import ConfigError
    from llmkit.formats.loader import keep_quantized_for, packed_by_default

    assert keep_quantized_for("packed") is True and keep_quantized_for("float") is False
    assert keep_quantized_for("auto") == "auto"
    assert packed_by_default("cpu", "auto") and packed_by_default("cpu", "float32")
    assert not packed_by_default("cpu", "bfloat16")
    with pytest.raises(ConfigError, match="weights choice 'fast'"):
        keep_quantized_for("fast")
    auto = load_model("smollm2", device="cpu", keep_quantized="auto")
    assert isinstance(auto.model.blocks[0].attn.wq, QuantLinear)  # a CPU in float32: the packed blocks
    bf16 = load_model("smollm2", device="cpu", dtype="bfloat16", keep_quantized="auto")
    assert not isinstance(bf16.model.blocks[0].attn.wq, QuantLinear)

"""QuantLinear / NF4Linear: the packed layout, the fast kernel against the dequantize oracle, NF4 math."""

import pytest
import torch
import torch.nn.functional as F

from llmkit.model.qkernels import kernels
from llmkit.model.qlinear import NF4, QuantLinear, dequantize_affine, pack_int4, q8_activations, unpack_int4
from llmkit.quantize import NF4Linear, nf4_codebook, quantize_groupwise
from llmkit.quantize.apply import to_quant_linear


def test_kernel_builds_here():
    assert kernels() is not None  # gcc + AVX2 on the reference machine: the fast path must be live


def test_pack_int4_layout_is_ggufs():
    q = torch.arange(32, dtype=torch.uint8)[None] % 16
    p = pack_int4(q)
    assert p.shape == (1, 16)
    assert p[0, 3].item() == (3 | (((16 + 3) % 16) << 4))  # byte j: value j low, value j+16 high
    q = torch.randint(0, 16, (5, 128), dtype=torch.uint8)
    assert torch.equal(unpack_int4(pack_int4(q)), q)


def _layer(bits, group, has_min, scale_dtype, bias, N=96, K=256):
    torch.manual_seed(bits + group)
    if bits == 4:
        q = torch.randint(0, 16, (N, K))
    else:
        q = torch.randint(-128, 128, (N, K))
    scale = torch.rand(N, K // group) * 0.01
    mn = torch.randn(N, K // group) * 0.01 if has_min else None
    b = torch.randn(N) if bias else None
    return QuantLinear.from_quantized(q, scale, mn, bits, b, scale_dtype)


@pytest.mark.parametrize("bits,group,has_min,scale_dtype,bias", [
    (4, 32, True, torch.float16, False), (4, 128, True, torch.float32, True), (4, 64, True, torch.float16, True),
    (8, 32, False, torch.float16, False), (8, 256, False, torch.float32, True), (8, 64, True, torch.float16, False)])
@pytest.mark.parametrize("rows", [1, 3, 8])
def test_kernel_matches_dequantize_oracle(bits, group, has_min, scale_dtype, bias, rows):
    layer = _layer(bits, group, has_min, scale_dtype, bias)
    x = torch.randn(rows, 256)
    # the kernel's exact model: int8-rounded activations against scale * q, exact ones against min
    w_q = dequantize_affine(layer.int_values(), layer.scale, None, group)
    oracle = q8_activations(x) @ w_q.T
    if has_min:
        oracle += x @ dequantize_affine(torch.zeros(96, 256), layer.scale, layer.min, group).T
    if bias:
        oracle += layer.bias
    exact = F.linear(x, layer.dequantize(), layer.bias)
    with torch.no_grad():
        y = layer(x)
        torch.testing.assert_close(y, oracle, atol=1e-4, rtol=1e-4)
        assert (y - exact).norm() / exact.norm() < 0.02  # activation rounding costs well under 2 %
        layer.exact_activations = True
        torch.testing.assert_close(layer(x), exact, atol=1e-4, rtol=1e-4)
        big = torch.randn(20, 256)  # above KERNEL_MAX_ROWS: the dequantize + GEMM path, exact
        torch.testing.assert_close(layer(big), F.linear(big, layer.dequantize(), layer.bias), atol=1e-4, rtol=1e-4)


def test_q8_activations_known_values():
    x = torch.zeros(1, 32)
    x[0, :3] = torch.tensor([1.27, -0.5, 0.013])
    # d = 1.27 / 127 = 0.01: -0.5 -> -50, 0.013 -> round(1.3) = 1 -> 0.01
    torch.testing.assert_close(q8_activations(x)[0, :3], torch.tensor([1.27, -0.5, 0.01]))
    assert torch.equal(q8_activations(torch.zeros(2, 64)), torch.zeros(2, 64))


def test_lower_precision_path_and_to_keeps_the_format():
    layer = _layer(4, 32, True, torch.float16, True)
    x = torch.randn(2, 7, 256)
    y = layer.to(torch.bfloat16)(x.bfloat16())  # the GPU-style path: dequantize to x.dtype, regular matmul
    assert y.dtype == torch.bfloat16 and y.shape == (2, 7, 96)
    assert layer.scale.dtype == torch.float16 and layer.qweight.dtype == torch.uint8
    torch.testing.assert_close(y.float(), F.linear(x, layer.dequantize(), layer.bias), atol=0.1, rtol=0.02)


def test_group_quant_to_layer_round_trip():
    torch.manual_seed(0)
    w = torch.randn(64, 128)
    for bits, sym in ((4, False), (4, True), (8, True), (8, False), (3, False)):
        gq = quantize_groupwise(w, bits, 32, sym)
        layer = to_quant_linear(gq)
        torch.testing.assert_close(layer.dequantize(), gq.dequantize(), atol=2e-3, rtol=1e-3)
        assert (layer.min is None) == (bits == 8 and sym)


def test_nf4_codebook_known_values():
    # QLoRA's NF4 levels (Dettmers et al. 2023, appendix E)
    expected = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0]
    torch.testing.assert_close(nf4_codebook(), torch.tensor(expected), atol=1e-6, rtol=0)


@pytest.mark.parametrize("double_quant", [False, True])
def test_nf4_linear_round_trip_and_memory(double_quant):
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 64, bias=True)
    layer = NF4Linear.from_linear(lin, block_size=64, double_quant=double_quant)
    w = lin.weight.detach()
    absmax = w.reshape(-1, 64).abs().amax(1, keepdim=True)
    gap = (NF4[1:] - NF4[:-1]).max()
    err = (layer.dequantize().reshape(-1, 64) - w.reshape(-1, 64)).abs()
    slack = 1.02 if double_quant else 1.0001  # the 8-bit scales add a little
    assert (err <= absmax * gap / 2 * slack).all()
    nbytes = sum(b.numel() * b.element_size() for n, b in layer.named_buffers() if n != "bias")
    bits_per_weight = nbytes * 8 / w.numel()
    assert bits_per_weight < (4.2 if double_quant else 4.6)


def test_nf4_forward_is_differentiable_in_x():
    torch.manual_seed(0)
    layer = NF4Linear.from_linear(torch.nn.Linear(128, 32), block_size=64)
    x = torch.randn(3, 128, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, layer.dequantize().sum(0).expand(3, 128))
    assert not any(b.requires_grad for b in layer.buffers())


def test_nf4_backward_equals_plain_linear_and_keeps_no_weight():
    """QLoRA's backward: same input gradient as F.linear on the dequantized weight; the codes get none."""
    torch.manual_seed(0)
    layer = NF4Linear.from_linear(torch.nn.Linear(64, 32, bias=True), block_size=64)
    x = torch.randn(3, 5, 64, requires_grad=True)
    y = layer(x)
    saved = [t for t in (y.grad_fn.next_functions[0][0].saved_tensors if hasattr(y.grad_fn.next_functions[0][0], "saved_tensors") else ())]
    assert not any(t.shape == (32, 64) for t in saved)  # no dequantized weight kept for backward
    g = torch.randn_like(y)
    (y * g).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    ref = torch.nn.functional.linear(x2, layer.dequantize(), layer.bias)
    (ref * g).sum().backward()
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(x.grad, x2.grad)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), ref)


class _AllocatedBytes(torch.utils._python_dispatch.TorchDispatchMode):
    """Sums the bytes of every tensor an op returns (views and in-place results excluded): what a call allocates."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in torch.utils._pytree.tree_leaves((args, kwargs))
                  if isinstance(a, torch.Tensor)}
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.bytes += t.numel() * t.element_size()
        return out


@pytest.mark.parametrize("double_quant", [False, True])
def test_nf4_dequantize_matches_reference_with_one_small_temporary(double_quant):
    """The byte-pair gather gives the plain decode's exact values, allocating the weight plus a 2-byte
    index per weight (the plain decode also makes an int64 copy of the codes: 8 bytes per weight)."""
    torch.manual_seed(0)
    layer = NF4Linear.from_linear(torch.nn.Linear(256, 96), block_size=64, double_quant=double_quant)
    assert torch.equal(layer.dequantize(), layer.dequantize_reference())
    assert torch.equal(layer.dequantize(torch.bfloat16), layer.dequantize_reference().bfloat16())
    n = 256 * 96
    with _AllocatedBytes() as fast:
        layer.dequantize()
    with _AllocatedBytes() as plain:
        layer.dequantize_reference()
    # fp32 weight 4n + int32 index 2n, plus the block scales (double-quantized: their decode costs ~n/2)
    assert fast.bytes <= 6.5 * n + 4096 < 2 * fast.bytes < plain.bytes


def test_nf4_backward_allocates_one_weight_not_more():
    """Backward dequantizes once (weight + index) and writes dL/dx: no other full-size temporaries."""
    torch.manual_seed(0)
    layer = NF4Linear.from_linear(torch.nn.Linear(256, 96), block_size=64)
    x = torch.randn(4, 256, requires_grad=True)
    y = layer(x)
    with _AllocatedBytes() as during:
        y.backward(torch.ones_like(y))
    n = 256 * 96
    assert during.bytes <= 6.5 * n + x.numel() * 4 + 4096

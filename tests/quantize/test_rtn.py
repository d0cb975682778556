"""Round-to-nearest quantizers: hand-worked values and error bounds."""

import pytest
import torch

from llmkit.quantize import QuantizationError, absmax_int8, dequantize, quantize_groupwise, zeropoint_int8


def test_absmax_per_tensor_known_values():
    w = torch.tensor([[1.0, -0.5, 0.25, -2.0]])
    q, s = absmax_int8(w)
    assert s.item() == pytest.approx(2.0 / 127)
    # 127 * [0.5, -0.25, 0.125, -1] = [63.5, -31.75, 15.875, -127]; 63.5 rounds to even
    assert q.tolist() == [[64, -32, 16, -127]]
    torch.testing.assert_close(dequantize(q, s), torch.tensor([[64, -32, 16, -127]]) * 2.0 / 127)


def test_zeropoint_known_values():
    w = torch.tensor([[-1.0, 0.0, 0.5, 2.0]])
    q, s, z = zeropoint_int8(w)
    assert s.item() == pytest.approx(3.0 / 255) and z.item() == -43  # round(-128 + 85)
    assert q.tolist() == [[-128, -43, -1, 127]]  # 0.5 / s = 42.5 -> 42 (to even), + z
    torch.testing.assert_close(dequantize(q, s, z), torch.tensor([[-1.0, 0.0, 42 * 3 / 255, 2.0]]))


def test_zeropoint_keeps_zero_exact_and_uses_the_whole_range():
    w = torch.rand(8, 64) * 3 + 0.5  # all positive: absmax would waste the negative half
    q, s, z = zeropoint_int8(w, per_channel=True)
    assert (q.amax(dim=1) == 127).all() and (z == -128).all()  # [0, max] spread over all 256 codes
    e_zp = (dequantize(q, s, z) - w).abs().mean()
    e_absmax = (dequantize(*absmax_int8(w, per_channel=True)) - w).abs().mean()
    assert e_zp < 0.6 * e_absmax  # twice the steps over the same range
    assert (dequantize(torch.zeros(8, 1, dtype=torch.int8) + z.to(torch.int8), s, z) == 0).all()


@pytest.mark.parametrize("per_channel", [False, True])
def test_int8_round_trip_error_is_at_most_half_a_step(per_channel):
    torch.manual_seed(0)
    w = torch.randn(16, 96) * torch.logspace(-2, 0, 16)[:, None]  # rows of very different ranges
    for fn in (absmax_int8, zeropoint_int8):
        out = fn(w, per_channel=per_channel)
        err = (dequantize(*out) - w).abs()
        assert (err <= out[1] / 2 + 1e-7).all()


def test_per_channel_beats_per_tensor_on_rows_of_different_range():
    torch.manual_seed(0)
    w = torch.randn(16, 96) * torch.logspace(-2, 0, 16)[:, None]
    e_tensor = (dequantize(*absmax_int8(w)) - w).pow(2).mean()
    e_channel = (dequantize(*absmax_int8(w, per_channel=True)) - w).pow(2).mean()
    assert e_channel < e_tensor / 4


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_groupwise_int4_error_bound(group_size, symmetric):
    torch.manual_seed(0)
    w = torch.randn(8, 256)
    gq = quantize_groupwise(w, bits=4, group_size=group_size, symmetric=symmetric)
    assert gq.q.shape == w.shape and gq.scale.shape == (8, 256 // group_size)
    assert int(gq.q.min()) >= 0 and int(gq.q.max()) <= 15
    step = gq.scale.repeat_interleave(group_size, dim=1)
    assert ((gq.dequantize() - w).abs() <= step / 2 * (1 + 1e-3)).all()


def test_groupwise_known_values_asymmetric():
    # one group of 32: min -1, max 2 -> s = 3/15 = 0.2 (stored fp16), z = 1 / s = 5
    w = torch.linspace(-1, 2, 32)[None]
    gq = quantize_groupwise(w, bits=4, group_size=32)
    assert gq.scale.item() == pytest.approx(0.2, abs=1e-4) and gq.zero.item() == pytest.approx(5, abs=2e-3)
    torch.testing.assert_close(gq.dequantize()[0, [0, -1]], torch.tensor([-1.0, 2.0]), atol=1e-3, rtol=0)
    assert gq.q[0, 0] == 0 and gq.q[0, -1] == 15


def test_smaller_groups_lose_less_with_outliers():
    torch.manual_seed(0)
    w = torch.randn(32, 512)
    w[:, ::97] *= 20  # a few outlier inputs per row
    errs = [(quantize_groupwise(w, 4, g).dequantize() - w).pow(2).mean() for g in (32, 64, 128)]
    assert errs[0] < errs[1] < errs[2]


def test_more_bits_lose_less():
    torch.manual_seed(0)
    w = torch.randn(8, 128)
    errs = [(quantize_groupwise(w, b, 32).dequantize() - w).pow(2).mean() for b in (2, 3, 4, 8)]
    assert errs == sorted(errs, reverse=True)


def test_bad_group_size_and_bits_are_one_line_errors():
    with pytest.raises(QuantizationError, match="group size 48 does not divide the 64 input features of wq"):
        quantize_groupwise(torch.randn(4, 64), 4, 48, name="wq")
    with pytest.raises(QuantizationError, match="bit width 5 is not supported"):
        quantize_groupwise(torch.randn(4, 64), 5, 32)
    assert "\n" not in str(QuantizationError("a", "b"))

"""GPTQ and AWQ: exact special cases, and lower output error than round-to-nearest on real text."""

import pytest
import torch

from llmkit.quantize import gptq_quantize, hessian, quantize_groupwise
from llmkit.quantize.apply import _block_inputs, _capture_inputs, awq_scale_model
from llmkit.quantize.awq import clip_group, scale_candidates, search_clip, search_scale


def out_err(x, w, wq):
    return ((x @ wq.T - x @ w.T) ** 2).mean().item()


def correlated_inputs(n=512, K=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(K, K, generator=g) * torch.logspace(0, -2, K)[None]  # few dominant directions
    return torch.randn(n, K, generator=g) @ basis + 0.01 * torch.randn(n, K, generator=g)


def test_gptq_with_uncorrelated_inputs_is_round_to_nearest():
    torch.manual_seed(0)
    w = torch.randn(16, 64)
    H = torch.eye(64) * 3.0  # no input is correlated with another: nothing to compensate with
    g = gptq_quantize(w, H, bits=4, group_size=32)
    assert torch.equal(g.q, quantize_groupwise(w, 4, 32).q)


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_beats_rtn_on_correlated_inputs(act_order):
    torch.manual_seed(0)
    x, w = correlated_inputs(), torch.randn(64, 128)
    rtn = quantize_groupwise(w, 4, 32).dequantize()
    gq = gptq_quantize(w, hessian(x), bits=4, group_size=32, act_order=act_order).dequantize()
    assert out_err(x, w, gq) < 0.7 * out_err(x, w, rtn)


@pytest.fixture(scope="module")
def smollm2_acts(smollm2):
    """Real inputs of SmolLM2 block 2's down-projection and q-projection on stdlib text."""
    from llmkit.data.sources import StdlibSource

    text = "".join(d for _, d in zip(range(3), StdlibSource()))
    ids = torch.tensor(smollm2.tokenizer.encode(text)[: 4 * 128]).reshape(4, 128)
    model = smollm2.model
    with torch.no_grad():
        x, cos, sin = _block_inputs(model, ids)
        for b in model.blocks[:2]:
            x = b(x, cos, sin, None)
        block = model.blocks[2]
        seen = _capture_inputs(block, ["mlp.w_down", "attn.wq"], lambda: block(x, cos, sin, None))
    return {n: (torch.cat(v), block.get_submodule(n).weight.detach()) for n, v in seen.items()}


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_beats_rtn_on_real_text(smollm2_acts, act_order):
    x, w = smollm2_acts["mlp.w_down"]
    calib, held = x[:384], x[384:]
    rtn = quantize_groupwise(w, 4, 128).dequantize()
    gq = gptq_quantize(w, hessian(calib), bits=4, group_size=128, act_order=act_order).dequantize()
    assert out_err(calib, w, gq) < 0.9 * out_err(calib, w, rtn)
    assert out_err(held, w, gq) < out_err(held, w, rtn)  # and it generalises to unseen tokens


def test_awq_scale_search_on_real_text(smollm2_acts):
    x, w = smollm2_acts["attn.wq"]

    def fq(m):
        return quantize_groupwise(m, 4, 64).dequantize()

    s, errs = search_scale(x, [w], fq)
    assert errs[0] == pytest.approx(out_err(x, w, fq(w)), rel=1e-4)  # alpha = 0 is plain RTN
    assert min(errs) < 0.95 * errs[0]
    assert s.shape == (w.shape[1],) and (s > 0).all()


def test_scale_candidates_are_normalised():
    s = scale_candidates(torch.tensor([0.1, 1.0, 10.0]), 1.0)
    assert (s.max() * s.min()).item() == pytest.approx(1.0)
    assert torch.equal(scale_candidates(torch.tensor([0.1, 5.0]), 0.0), torch.ones(2))


def test_awq_folding_leaves_the_float_model_unchanged():
    from llmkit.model import Transformer, preset

    cfg = preset("tiny-llama").replace(vocab_size=300, n_layer=2, d_model=64, max_seq_len=64)
    model = Transformer(cfg).init_weights(seed=0).eval()
    ids = torch.randint(0, 300, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(ids)
        awq_scale_model(model, ids, bits=4, group_size=32, symmetric=False, clip=False)
        torch.testing.assert_close(model(ids), ref, atol=1e-4, rtol=1e-4)


def test_clip_group_known_values():
    w = torch.tensor([[[-1.0, 0.5, 4.0, 2.0]]])  # one row, one group of 4
    assert clip_group(w, torch.tensor([[0.5]]), symmetric=True).tolist() == [[[-1.0, 0.5, 2.0, 2.0]]]
    assert clip_group(w, torch.tensor([[0.5]]), symmetric=False).tolist() == [[[-0.5, 0.5, 2.0, 2.0]]]
    assert torch.equal(clip_group(w, torch.tensor([[1.0]]), symmetric=False), w)


@pytest.mark.parametrize("symmetric", [True, False])
def test_clip_search_beats_no_clip_on_outlier_groups(symmetric):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 128, generator=g)
    w = torch.randn(64, 128, generator=g) * 0.02
    w[:, ::16] *= 12  # one outlier per 16 inputs stretches each 32-wide group's grid

    def fq(m):
        return quantize_groupwise(m, 4, 32, symmetric).dequantize()

    clipped, r = search_clip(x, w, 32, symmetric, fq)
    assert r.shape == (64, 4) and (r <= 1).all() and (r < 1).any()
    assert out_err(x, w, fq(clipped)) < 0.99 * out_err(x, w, fq(w))  # measured: 0.98 (asym) and below (sym)
    assert out_err(x, w, fq(clipped)) <= out_err(x, w, fq(w))


def test_clip_search_on_real_text_never_hurts(smollm2_acts):
    x, w = smollm2_acts["mlp.w_down"]  # the down projection: its inputs have the heaviest outliers

    def fq(m):
        return quantize_groupwise(m, 4, 64).dequantize()

    clipped, _ = search_clip(x[:256], w, 64, False, fq)
    assert out_err(x[:256], w, fq(clipped)) <= out_err(x[:256], w, fq(w)) * (1 + 1e-6)
    assert out_err(x[256:], w, fq(clipped)) < out_err(x[256:], w, fq(w)) * 1.02  # held-out tokens: no worse

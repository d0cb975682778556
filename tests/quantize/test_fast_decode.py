"""The one-call batch-1 decode step (DecodePlan) against the regular torch path."""

import pytest
import torch

from llmkit.model import KVCache, ModelConfig, Transformer, fast_decode
from llmkit.model.lora import LoRAConfig, apply_lora
from llmkit.model.qkernels import kernels
from llmkit.quantize.apply import quantize_model

pytestmark = pytest.mark.skipif(kernels() is None, reason="needs the compiled CPU kernels")


def _model(bits: int, group: int = 32, **cfg) -> Transformer:
    torch.manual_seed(0)
    c = ModelConfig(**{"vocab_size": 256, "n_layer": 3, "n_head": 4, "n_kv_head": 2, "d_model": 128,
                       "max_seq_len": 2048, **cfg})
    m = Transformer(c).eval()
    if bits == 8:
        quantize_model(m, "int8")
    else:
        quantize_model(m, "int4", bits=4, group_size=group)
    return m


def _exact(m: Transformer) -> Transformer:
    """Float activations everywhere: the two paths then differ only by float summation order."""
    for mod in m.modules():
        if hasattr(mod, "exact_activations"):
            mod.exact_activations = True
    return m


def _decode(m: Transformer, prompt: torch.Tensor, steps: int, fast: bool) -> torch.Tensor:
    old, fast_decode.ENABLED = fast_decode.ENABLED, fast
    try:
        cache = KVCache.allocate(m.cfg, 1, prompt.shape[1] + steps + 1)
        out = []
        with torch.no_grad():
            m(prompt, kv_cache=cache)
            tok = torch.tensor([[7]])
            for i in range(steps):
                logits = m(tok, kv_cache=cache, last_only=True)
                out.append(logits[0, -1])
                tok = torch.tensor([[(int(logits[0, -1].argmax()) + i) % 256]])  # fixed inputs for both paths
        assert cache.pos == prompt.shape[1] + steps
        return torch.stack(out), cache
    finally:
        fast_decode.ENABLED = old


@pytest.mark.parametrize("bits,group,extra", [
    (8, 32, {}), (4, 32, {}), (4, 64, {"qkv_bias": True, "mlp_bias": True, "attn_out_bias": True}),
    (8, 32, {"n_kv_head": 4}), (4, 128, {"n_kv_head": 1, "rope_scaling": "linear", "rope_factor": 2.0})])
def test_fast_step_matches_the_torch_path(bits, group, extra):
    m = _exact(_model(bits, group, **extra))
    assert fast_decode.plan_for(m) is not None
    prompt = torch.randint(0, 256, (1, 9))
    slow, c1 = _decode(m, prompt, 12, fast=False)
    fast, c2 = _decode(m, prompt, 12, fast=True)
    torch.testing.assert_close(fast, slow, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(c2.k, c1.k, atol=2e-5, rtol=1e-4)  # the cache it wrote is the same cache
    torch.testing.assert_close(c2.v, c1.v, atol=2e-5, rtol=1e-4)


def test_long_context_splits_heads_across_threads_and_still_matches():
    m = _exact(_model(8))
    prompt = torch.randint(0, 256, (1, 1100))  # 4 heads x 1100 keys: the parallel attention branch
    slow, _ = _decode(m, prompt, 3, fast=False)
    fast, _ = _decode(m, prompt, 3, fast=True)
    torch.testing.assert_close(fast, slow, atol=2e-4, rtol=1e-4)


def test_rounded_activations_stay_close():
    m = _model(8)  # default: int8-rounded activations (a tiny input change can flip one rounding)
    prompt = torch.randint(0, 256, (1, 9))
    slow, _ = _decode(m, prompt, 8, fast=False)
    fast, _ = _decode(m, prompt, 8, fast=True)
    assert (fast - slow).abs().max() < 0.05 * slow.abs().max()


def test_only_eligible_models_get_a_plan():
    torch.manual_seed(0)
    fp32 = Transformer(ModelConfig(vocab_size=256, n_layer=2, d_model=64)).eval()
    assert fast_decode.plan_for(fp32) is None  # float weights: the regular path
    gpt2 = Transformer(ModelConfig(vocab_size=256, n_layer=2, d_model=64, pos="learned", norm="layernorm",
                                   mlp="gelu")).eval()
    quantize_model(gpt2, "int8")
    assert fast_decode.plan_for(gpt2) is None
    moe = Transformer(ModelConfig(vocab_size=256, n_layer=2, d_model=64, n_expert=2)).eval()
    assert fast_decode.plan_for(moe) is None
    with torch.no_grad():  # a one-token MoE decode goes the regular way
        cache = KVCache.allocate(moe.cfg, 1, 8)
        moe(torch.tensor([[1, 2]]), kv_cache=cache)
        assert moe(torch.tensor([[3]]), kv_cache=cache).shape == (1, 1, 256)
    m = _model(8)
    assert fast_decode.plan_for(m) is not None
    apply_lora(m, LoRAConfig(r=4, targets=["wq"]))  # a wrapped projection: the plan would skip the adapter
    assert fast_decode.plan_for(m) is None


def test_plan_follows_replaced_layers():
    m = _exact(_model(8))
    prompt = torch.randint(0, 256, (1, 5))
    _decode(m, prompt, 2, fast=True)
    first = fast_decode.plan_for(m)
    m.blocks[1] = _exact(_model(4)).blocks[1]  # a whole block swapped for a 4-bit one
    assert fast_decode.plan_for(m) is not first
    slow, _ = _decode(m, prompt, 4, fast=False)
    fast, _ = _decode(m, prompt, 4, fast=True)
    torch.testing.assert_close(fast, slow, atol=2e-4, rtol=1e-4)


def test_batches_padding_and_grad_take_the_regular_path():
    m = _model(8)
    cache = KVCache.allocate(m.cfg, 2, 16)
    assert not fast_decode.usable(m, torch.tensor([[1], [2]]), cache)
    padded = KVCache.allocate(m.cfg, 1, 16, start=torch.tensor([2]))
    assert not fast_decode.usable(m, torch.tensor([[1]]), padded)
    one = KVCache.allocate(m.cfg, 1, 16)
    with torch.no_grad():
        assert fast_decode.usable(m, torch.tensor([[1]]), one)
    assert not fast_decode.usable(m, torch.tensor([[1]]), one)  # grad mode on


def test_plan_follows_replaced_buffers_and_swapped_storage():
    m = _model(8)
    first = fast_decode.plan_for(m)
    assert fast_decode.plan_for(m) is first  # nothing changed: the cached plan
    wq = m.blocks[0].attn.wq
    wq.scale = wq.scale.clone()  # a replaced buffer
    second = fast_decode.plan_for(m)
    assert second is not first
    norm = m.blocks[1].mlp_norm.weight
    norm.data = norm.data.clone()  # what model.to(...) does to a parameter: same object, new storage
    assert fast_decode.plan_for(m) is not second
    m.blocks.append(m.blocks[0])
    assert fast_decode.plan_for(m) is not None and m.__dict__["_decode_plan"][0][2] == len(m.blocks)

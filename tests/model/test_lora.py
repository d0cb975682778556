"""LoRA: wrapper math, merge/unmerge idempotence, adapters off, typed errors."""

import pytest
import torch

from llmkit.model import Transformer, preset
from llmkit.model.lora import (AdapterError, LoRAConfig, LoRALinear, adapters_disabled, apply_lora,
                               load_lora_state_dict, lora_info, lora_state_dict, match_targets, merge_and_unload,
                               merge_lora, unmerge_lora)


def _tiny(tie=False):
    cfg = preset("tiny-llama").replace(vocab_size=97, n_layer=2, d_model=32, n_head=4, n_kv_head=2, max_seq_len=64,
                                       tie_embeddings=tie)
    torch.manual_seed(0)
    return Transformer(cfg).eval()


def _randomize_b(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, m in model.named_modules():
            if isinstance(m, LoRALinear):
                m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g) * 0.1)


IDX = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(3))


def test_fresh_adapter_is_identity_and_only_lora_trains():
    model = _tiny()
    with torch.no_grad():
        before = model(IDX)
    names = apply_lora(model, LoRAConfig(r=4, alpha=8, targets=("wq", "v_proj")))
    assert names == ["blocks.0.attn.wq", "blocks.0.attn.wv", "blocks.1.attn.wq", "blocks.1.attn.wv"]
    with torch.no_grad():
        torch.testing.assert_close(model(IDX), before)  # B = 0: the update starts at zero
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{n}.lora_{k}" for n in names for k in "AB"}
    info = lora_info(model)
    assert info.trainable == sum(4 * 32 + 4 * m.out_features for _, m in
                                 [(n, model.get_submodule(n)) for n in names])


def test_forward_is_base_plus_scaled_low_rank():
    base = torch.nn.Linear(6, 5)
    m = LoRALinear(base, r=2, alpha=3.0)
    with torch.no_grad():
        m.lora_B.normal_()
    x = torch.randn(4, 6)
    expected = base(x) + (3.0 / 2) * x @ m.lora_A.T @ m.lora_B.T
    torch.testing.assert_close(m(x), expected)


def test_merge_is_w_plus_scaled_ba_and_idempotent():
    model = _tiny()
    apply_lora(model, LoRAConfig(r=4, alpha=12, targets=("all-linear",)))
    _randomize_b(model)
    lin = model.get_submodule("blocks.1.mlp.w_down")
    w0 = lin.base.weight.detach().clone()
    with torch.no_grad():
        unmerged_out = model(IDX)
    merge_lora(model)
    torch.testing.assert_close(lin.base.weight, w0 + (12 / 4) * lin.lora_B @ lin.lora_A)
    once = lin.base.weight.detach().clone()
    merge_lora(model)  # merging twice changes nothing
    assert torch.equal(lin.base.weight, once)
    with torch.no_grad():
        torch.testing.assert_close(model(IDX), unmerged_out, atol=1e-5, rtol=1e-5)
    unmerge_lora(model)
    unmerge_lora(model)
    torch.testing.assert_close(lin.base.weight, w0, atol=1e-6, rtol=0)


def test_adapters_disabled_gives_the_base_model_merged_or_not():
    model = _tiny()
    with torch.no_grad():
        base_out = model(IDX)
    apply_lora(model, LoRAConfig(r=2, alpha=4, targets=("wq", "wo", "w_up")))
    _randomize_b(model)
    with torch.no_grad():
        adapted = model(IDX)
        assert not torch.allclose(adapted, base_out)
        with adapters_disabled(model):
            torch.testing.assert_close(model(IDX), base_out)
        merge_lora(model)
        with adapters_disabled(model):
            torch.testing.assert_close(model(IDX), base_out, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(IDX), adapted, atol=1e-5, rtol=1e-5)


def test_merge_and_unload_and_state_dict_roundtrip():
    model = _tiny()
    apply_lora(model, LoRAConfig(r=3, alpha=6, targets=("wk", "w_gate")))
    _randomize_b(model)
    sd = lora_state_dict(model)
    with torch.no_grad():
        adapted = model(IDX)
    other = _tiny()
    apply_lora(other, LoRAConfig(r=3, alpha=6, targets=("wk", "w_gate")))
    load_lora_state_dict(other, sd)
    with torch.no_grad():
        torch.testing.assert_close(other(IDX), adapted)
    plain = merge_and_unload(model)
    assert not any("lora" in n for n, _ in plain.named_parameters())
    assert set(plain.state_dict()) == set(_tiny().state_dict())
    with torch.no_grad():
        torch.testing.assert_close(plain(IDX), adapted, atol=1e-5, rtol=1e-5)


def test_gradient_reaches_only_a_and_b():
    model = _tiny().train()
    apply_lora(model, LoRAConfig(r=2, alpha=2, targets=("wq",)))
    _randomize_b(model)
    model(IDX).sum().backward()
    lin = model.get_submodule("blocks.0.attn.wq")
    assert lin.lora_A.grad is not None and lin.lora_B.grad is not None
    assert lin.base.weight.grad is None


@pytest.mark.parametrize("kw, needle", [({"r": 0}, "rank r=0"), ({"r": -2}, "rank r=-2"),
                                        ({"alpha": 0}, "alpha"), ({"dropout": 1.0}, "dropout")])
def test_bad_config_is_a_typed_error(kw, needle):
    with pytest.raises(AdapterError, match=needle):
        LoRAConfig(**kw)


def test_target_matching_no_module_is_a_typed_error():
    with pytest.raises(AdapterError, match="'qkv_proj' matches no linear module") as e:
        match_targets(_tiny(), ("wq", "qkv_proj"))
    assert "wq" in str(e.value)  # the fix lists what exists


def test_lm_head_of_tied_model_is_refused():
    with pytest.raises(AdapterError, match="tied"):
        apply_lora(_tiny(tie=True), LoRAConfig(targets=("lm_head",)))


def test_mismatched_adapter_is_a_typed_error():
    model = _tiny()
    apply_lora(model, LoRAConfig(r=4, alpha=8, targets=("wq",)))
    other = _tiny()
    apply_lora(other, LoRAConfig(r=2, alpha=8, targets=("wq",)))
    with pytest.raises(AdapterError, match="shape"):
        load_lora_state_dict(other, lora_state_dict(model))
    third = _tiny()
    apply_lora(third, LoRAConfig(r=4, alpha=8, targets=("wv",)))
    with pytest.raises(AdapterError, match="does not fit"):
        load_lora_state_dict(third, lora_state_dict(model))


class _FakeQuantLinear(torch.nn.Module):
    """A Linear-like module without a float weight: what a quantized layer looks like to LoRA."""

    def __init__(self, w):
        super().__init__()
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        self.register_buffer("q", (w * 100).round().to(torch.int16))

    def dequantize(self):
        return self.q.float() / 100

    def forward(self, x):
        return x @ self.dequantize().T


def test_wraps_any_linear_like_module():
    w = torch.randn(5, 6)
    q = _FakeQuantLinear(w)
    m = LoRALinear(q, r=2, alpha=4)
    with torch.no_grad():
        m.lora_B.normal_()
    x = torch.randn(3, 6)
    torch.testing.assert_close(m(x), q(x) + 2.0 * x @ m.lora_A.T @ m.lora_B.T)
    with pytest.raises(AdapterError, match="in place"):
        m.merge()
    merged = m.merged_linear()
    torch.testing.assert_close(merged(x), m(x), atol=1e-5, rtol=1e-5)

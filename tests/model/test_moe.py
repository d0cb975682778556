"""The MoE layer: routing math by hand, identical experts == the dense MLP, the loop oracle."""

import math

import pytest
import torch

from llmkit.core.errors import ConfigError
from llmkit.model import ModelConfig, Transformer, preset
from llmkit.model.moe import route


def test_route_top_k_by_hand():
    w, ids = route(torch.tensor([[1.0, 2.0, 3.0, 0.0], [0.0, 0.0, 5.0, 0.0]]), 2)
    e = math.e
    assert ids[0].tolist() == [2, 1]
    torch.testing.assert_close(w[0], torch.tensor([e / (1 + e), 1 / (1 + e)]))
    torch.testing.assert_close(w.sum(-1), torch.ones(2))
    # same as softmax over all experts, then renormalised over the chosen two
    p = torch.softmax(torch.tensor([1.0, 2.0, 3.0, 0.0]), -1)
    torch.testing.assert_close(w[0], p[[2, 1]] / p[[2, 1]].sum())
    w1, ids1 = route(torch.tensor([[0.3, -1.0, 0.2]]), 1)
    assert ids1.tolist() == [[0]] and w1.tolist() == [[1.0]]


def _cfg(**kw):
    return preset("tiny-llama").replace(vocab_size=97, n_layer=2, d_model=32, n_head=4, n_kv_head=2, d_ff=48,
                                        max_seq_len=64, **kw)


def test_identical_experts_equal_the_dense_model():
    dense = Transformer(_cfg()).init_weights(seed=0).eval()
    moe = Transformer(_cfg(n_expert=4, n_expert_active=2)).init_weights(seed=1).eval()
    sd = {}
    for k, v in dense.export_state_dict().items():
        if ".mlp." in k:
            i, rest = k.split(".mlp.")
            for e in range(4):
                sd[f"{i}.mlp.experts.{e}.{rest}"] = v
        else:
            sd[k] = v
    for i in range(2):  # a random router: the weights still sum to 1 over identical experts
        sd[f"blocks.{i}.mlp.gate.weight"] = torch.randn(4, 32)
    moe.load_weights(sd)
    idx = torch.randint(0, 97, (2, 11))
    torch.testing.assert_close(moe(idx), dense(idx), rtol=1e-5, atol=1e-5)


def test_moe_forward_matches_a_token_loop():
    torch.manual_seed(0)
    model = Transformer(_cfg(n_expert=3, n_expert_active=2)).init_weights(seed=0).eval()
    layer = model.blocks[0].mlp
    x = torch.randn(2, 5, 32)
    want = torch.zeros_like(x)
    for b in range(2):
        for t in range(5):
            logits = layer.gate.weight @ x[b, t]  # (E,)
            top = logits.topk(2)
            w = torch.softmax(top.values, -1)
            want[b, t] = sum(w[j] * layer.experts[int(top.indices[j])](x[b, t][None])[0] for j in range(2))
    torch.testing.assert_close(layer(x), want, rtol=1e-5, atol=1e-6)


def test_dense_config_dict_is_unchanged_and_moe_round_trips():
    d = _cfg().to_dict()
    assert "n_expert" not in d and "n_expert_active" not in d
    m = _cfg(n_expert=4, n_expert_active=1)
    assert ModelConfig.from_dict(m.to_dict()) == m
    with pytest.raises(ConfigError, match="n_expert_active=5"):
        _cfg(n_expert=4, n_expert_active=5)
    with pytest.raises(ConfigError, match="swiglu"):
        _cfg(n_expert=2, mlp="gelu")


def test_moe_trains():
    torch.manual_seed(0)
    model = Transformer(_cfg(n_expert=4, n_expert_active=2)).init_weights(seed=0)
    idx = torch.randint(0, 97, (2, 9))
    loss = torch.nn.functional.cross_entropy(model(idx[:, :-1]).reshape(-1, 97), idx[:, 1:].reshape(-1))
    loss.backward()
    assert model.blocks[0].mlp.gate.weight.grad.abs().sum() > 0
    assert all(e.w_up.weight.grad is not None for e in model.blocks[0].mlp.experts)

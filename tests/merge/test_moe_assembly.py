"""frankenMoE assembly: experts from each parent's MLPs, routers from prompts (or random)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from llmkit.core.errors import LLMKitError
from llmkit.formats.loader import load_model
from llmkit.merge import merge_models


def weights(path):
    return load_file(str(path / "model.safetensors"))


def test_moe_of_identical_experts_equals_the_dense_model(parents, tmp_path):
    base = str(parents["base"])
    cfg = {"base_model": base, "gate_mode": "random", "experts_per_token": 2,
           "experts": [{"source_model": base}, {"source_model": base}, {"source_model": base}]}
    res = merge_models(cfg, tmp_path / "moe")
    moe, dense = load_model(res.path, device="cpu"), load_model(base, device="cpu")
    assert moe.config.n_expert == 3 and moe.config.n_expert_active == 2
    idx = torch.randint(0, dense.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(moe.model(idx), dense.model(idx), rtol=1e-5, atol=1e-5)


def _mlp_inputs_by_hand(model, ids):
    """The last token's MLP input per layer, walking the blocks explicitly (the oracle for the hooks)."""
    x = model.tok_emb(torch.tensor([ids]))
    T = len(ids)
    cos, sin = model.rope_cos[:T][None, None], model.rope_sin[:T][None, None]
    rows = []
    for b in model.blocks:
        h = x + b.attn(b.attn_norm(x), cos, sin, None)
        m = b.mlp_norm(h)
        rows.append(m[0, -1])
        x = h + b.mlp(m)
    return torch.stack(rows)


def test_hidden_gates_point_at_each_experts_prompts(parents, tmp_path):
    prompts = {"a": ["def merge(models):"], "b": ["Model merging averages", "weights of models"]}
    cfg = {"base_model": str(parents["base"]), "gate_mode": "hidden", "experts_per_token": 1, "name": "frankenmoe",
           "experts": [{"source_model": str(parents["a"]), "positive_prompts": prompts["a"]},
                       {"source_model": str(parents["b"]), "positive_prompts": prompts["b"],
                        "negative_prompts": ["return sum"]}]}
    res = merge_models(cfg, tmp_path / "moe")
    got, wa, wb = weights(res.path), weights(parents["a"]), weights(parents["b"])
    # experts are the parents' MLPs, everything else is the base
    torch.testing.assert_close(got["blocks.1.mlp.experts.0.w_up.weight"], wa["blocks.1.mlp.w_up.weight"])
    torch.testing.assert_close(got["blocks.2.mlp.experts.1.w_down.weight"], wb["blocks.2.mlp.w_down.weight"])
    torch.testing.assert_close(got["blocks.0.attn.wq.weight"], weights(parents["base"])["blocks.0.attn.wq.weight"])
    base = load_model(parents["base"], device="cpu")
    tok = base.tokenizer
    with torch.no_grad():
        ha = torch.stack([_mlp_inputs_by_hand(base.model, tok.encode(p)) for p in prompts["a"]]).mean(0)
        hb = torch.stack([_mlp_inputs_by_hand(base.model, tok.encode(p)) for p in prompts["b"]]).mean(0)
        hb = hb - _mlp_inputs_by_hand(base.model, tok.encode("return sum"))
    unit = lambda v: v / v.norm(dim=-1, keepdim=True)  # noqa: E731
    for i in range(3):
        torch.testing.assert_close(got[f"blocks.{i}.mlp.gate.weight"], torch.stack([unit(ha)[i], unit(hb)[i]]),
                                   rtol=1e-4, atol=1e-5)
    meta = json.loads((res.path / "meta.json").read_text())
    assert meta["lineage"]["method"] == "moe" and meta["name"] == "frankenmoe"
    assert [p["role"] for p in meta["lineage"]["parents"]] == ["base", "expert", "expert"]
    lm = load_model(res.path, device="cpu")
    assert lm.model(torch.tensor([tok.encode("def merge")])).isfinite().all()


def test_cheap_embed_gates_are_mean_embeddings(parents, tmp_path):
    cfg = {"base_model": str(parents["base"]), "gate_mode": "cheap_embed",
           "experts": [{"source_model": str(parents["a"]), "positive_prompts": ["def"]},
                       {"source_model": str(parents["b"]), "positive_prompts": ["Model merging"]}]}
    got = weights(merge_models(cfg, tmp_path / "moe").path)
    base = load_model(parents["base"], device="cpu")
    emb = base.model.tok_emb.weight.detach()
    want = torch.stack([emb[base.tokenizer.encode(p)].mean(0) for p in ("def", "Model merging")])
    want = want / want.norm(dim=-1, keepdim=True)
    for i in range(3):
        torch.testing.assert_close(got[f"blocks.{i}.mlp.gate.weight"], want)


@pytest.mark.parametrize("cfg, needle", [
    ({"experts": [{"source_model": "x"}, {"source_model": "y"}]}, "needs a base_model"),
    ({"base_model": "x", "experts": [{"source_model": "x", "positive_prompts": ["p"]}]}, "at least 2 experts"),
    ({"base_model": "x", "experts": [{"source_model": "x"}, {"source_model": "y"}]}, "no positive_prompts"),
    ({"base_model": "x", "gate_mode": "random", "experts_per_token": 3,
      "experts": [{"source_model": "x"}, {"source_model": "y"}]}, "experts_per_token=3"),
    ({"base_model": "x", "gate_mode": "learned", "experts": [{"source_model": "x"}, {"source_model": "y"}]},
     "unknown gate_mode 'learned'"),
])
def test_bad_moe_configs(cfg, needle, tmp_path):
    with pytest.raises(LLMKitError, match=needle.replace("(", r"\(")):
        merge_models(cfg, tmp_path / "never")
    assert not (tmp_path / "never").exists()

"""merge_models end to end on tiny checkpoints: every method through the production planner."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from llmkit.formats.hf import save_hf
from llmkit.formats.loader import load_model, save_model
from llmkit.generate import Engine, SamplingParams
from llmkit.core.errors import LLMKitError
from llmkit.merge import merge_models
from llmkit.merge import methods as M
from llmkit.merge.run import _generator
from llmkit.model import Transformer
from llmkit.tokenizer.train import train_bpe

from .conftest import TEXT, tiny_cfg


def weights(path):
    return load_file(str(path / "model.safetensors"))


def test_linear_one_model_is_identity(parents, tmp_path):
    out = merge_models({"merge_method": "linear", "models": [{"model": str(parents["a"]),
                                                              "parameters": {"weight": 0.4}}]}, tmp_path / "m")
    got, want = weights(out.path), weights(parents["a"])
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)


def test_linear_soup_loads_generates_and_records_lineage(parents, tmp_path):
    cfg = {"merge_method": "linear", "name": "soup",
           "models": [{"model": str(parents["a"]), "parameters": {"weight": 1.0}},
                      {"model": str(parents["b"]), "parameters": {"weight": 3.0}}]}
    res = merge_models(cfg, tmp_path / "soup")
    got, a, b = weights(res.path), weights(parents["a"]), weights(parents["b"])
    for k in a:
        torch.testing.assert_close(got[k], (a[k] + 3 * b[k]) / 4)
    meta = json.loads((res.path / "meta.json").read_text())
    lin = meta["lineage"]
    assert meta["stage"] == "merge" and meta["name"] == "soup" and lin["method"] == "linear"
    assert [p["name"] for p in lin["parents"]] == ["a", "b"]
    assert [p["parameters"]["weight"] for p in lin["parents"]] == [1.0, 3.0]
    assert all(len(p["sha256"]) == 64 for p in lin["parents"])
    lm = load_model(res.path, device="cpu")
    params = SamplingParams(temperature=0, max_tokens=5, ignore_eos=True)
    out = Engine(lm.model, lm.tokenizer).generate([lm.tokenizer.encode("def merge")], params)
    assert len(out[0].token_ids) == 5


def test_slerp_gradient_and_filters(parents, tmp_path):
    base, other = str(parents["base"]), str(parents["a"])
    cfg = {"merge_method": "slerp", "base_model": base, "models": [{"model": base}, {"model": other}],
           "parameters": {"t": [{"filter": "self_attn", "value": [0, 1]}, {"filter": "mlp_norm", "value": 0},
                                 {"value": 0.5}]}}
    got = weights(merge_models(cfg, tmp_path / "s").path)
    wb, wa = weights(parents["base"]), weights(parents["a"])
    # attention follows the gradient over 3 layers: t = 0, 0.5, 1 (filter given as the HF name "self_attn")
    torch.testing.assert_close(got["blocks.0.attn.wq.weight"], wb["blocks.0.attn.wq.weight"])
    torch.testing.assert_close(got["blocks.2.attn.wq.weight"], wa["blocks.2.attn.wq.weight"])
    torch.testing.assert_close(got["blocks.1.attn.wk.weight"],
                               M.slerp(0.5, wb["blocks.1.attn.wk.weight"], wa["blocks.1.attn.wk.weight"]))
    # "mlp_norm" names no HF tensor, so it is matched against our names
    torch.testing.assert_close(got["blocks.1.mlp_norm.weight"], wb["blocks.1.mlp_norm.weight"])
    # everything else takes the fallback value 0.5 (the embedding is outside the layers: t = 0 for gradients)
    for k in ("blocks.0.mlp.w_up.weight", "tok_emb.weight"):
        torch.testing.assert_close(got[k], M.slerp(0.5, wb[k], wa[k]))


@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "dare_linear", "dare_ties"])
def test_task_vector_methods_match_the_pure_functions(parents, tmp_path, method):
    base = str(parents["base"])
    cfg = {"merge_method": method, "base_model": base, "seed": 3,
           "models": [{"model": str(parents["a"]), "parameters": {"weight": 0.6, "density": 0.5}},
                      {"model": str(parents["b"]), "parameters": {"weight": 0.4, "density": 0.5}}]}
    if method == "task_arithmetic":
        for m in cfg["models"]:
            del m["parameters"]["density"]
    got = weights(merge_models(cfg, tmp_path / "m").path)
    wb, wa, wc = weights(parents["base"]), weights(parents["a"]), weights(parents["b"])
    k = "blocks.1.mlp.w_down.weight"
    if method == "task_arithmetic":
        want = M.task_arithmetic(wb[k], [wa[k], wc[k]], [0.6, 0.4])
    elif method == "ties":
        want = M.ties(wb[k], [wa[k], wc[k]], [0.6, 0.4], [0.5, 0.5])
    if method.startswith("dare"):
        again = weights(merge_models(cfg, tmp_path / "again").path)
        assert torch.equal(got[k], again[k])  # seeded: the same config gives the same model
        delta = got[k] - wb[k]
        assert 0.18 < (delta == 0).float().mean() < 0.33  # about (1-p)^2 of entries dropped by both
        deltas = [M.dare(d, 0.5, _generator(3, k, i)) for i, d in enumerate(M.task_vectors(wb[k], [wa[k], wc[k]]))]
        want = M.combine_task_vectors(wb[k], deltas, [0.6, 0.4], "sum" if method == "dare_ties" else None)
    torch.testing.assert_close(got[k], want)


def test_passthrough_stacks_layer_slices(parents, tmp_path):
    cfg = {"merge_method": "passthrough",
           "slices": [{"sources": [{"model": str(parents["a"]), "layer_range": [0, 2]}]},
                      {"sources": [{"model": str(parents["b"]), "layer_range": [1, 3]}]}]}
    res = merge_models(cfg, tmp_path / "frank")
    # the same model twice with overlapping ranges repeats layer 1 (a classic self-frankenmerge)
    self_cfg = {"merge_method": "passthrough",
                "slices": [{"sources": [{"model": str(parents["a"]), "layer_range": [0, 2]}]},
                           {"sources": [{"model": str(parents["a"]), "layer_range": [1, 3]}]}]}
    twice = weights(merge_models(self_cfg, tmp_path / "self").path)
    torch.testing.assert_close(twice["blocks.1.mlp.w_up.weight"], twice["blocks.2.mlp.w_up.weight"], rtol=0, atol=0)
    got, wa, wb = weights(res.path), weights(parents["a"]), weights(parents["b"])
    assert res.n_layer == 4
    torch.testing.assert_close(got["blocks.1.attn.wq.weight"], wa["blocks.1.attn.wq.weight"], rtol=0, atol=0)
    torch.testing.assert_close(got["blocks.2.attn.wq.weight"], wb["blocks.1.attn.wq.weight"], rtol=0, atol=0)
    torch.testing.assert_close(got["blocks.3.mlp.w_up.weight"], wb["blocks.2.mlp.w_up.weight"], rtol=0, atol=0)
    torch.testing.assert_close(got["tok_emb.weight"], wa["tok_emb.weight"])  # first slice's embedding
    torch.testing.assert_close(got["norm_f.weight"], wb["norm_f.weight"])  # last slice's final norm
    lm = load_model(res.path, device="cpu")
    assert lm.config.n_layer == 4
    assert lm.model(torch.tensor([[1, 2, 3]])).shape == (1, 3, lm.config.vocab_size)


def test_hf_directory_parent_and_bfloat16_output(parents, tmp_path):
    lm = load_model(parents["a"], device="cpu")
    hf_dir = save_hf(tmp_path / "hf", lm.config, lm.model.export_state_dict(), lm.tokenizer)
    cfg = {"merge_method": "linear", "dtype": "bfloat16",
           "models": [{"model": str(hf_dir), "parameters": {"weight": 1}},
                      {"model": str(parents["a"]), "parameters": {"weight": 1}}]}
    got = weights(merge_models(cfg, tmp_path / "m").path)
    want = weights(parents["a"])
    for k in want:
        assert got[k].dtype == torch.bfloat16
        torch.testing.assert_close(got[k].float(), want[k].bfloat16().float())


# ---- bad input ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def strangers(tmp_path_factory, tok):
    root = tmp_path_factory.mktemp("strangers")
    wide = Transformer(tiny_cfg(tok.vocab_size).replace(d_model=64)).eval()
    other_tok = train_bpe([TEXT[::-1]], tok.vocab_size)
    same_shape = Transformer(tiny_cfg(other_tok.vocab_size)).eval()
    return {"wide": save_model(root / "wide", wide, tok), "tok": save_model(root / "tok", same_shape, other_tok)}


def _raises(cfg, tmp_path, *needles):
    with pytest.raises(LLMKitError) as e:
        merge_models(cfg, tmp_path / "never")
    msg = str(e.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg
    assert not (tmp_path / "never").exists()  # nothing half-written
    return msg


def test_mismatched_architecture_and_tokenizer(parents, strangers, tmp_path):
    two = lambda other: {"merge_method": "linear", "models": [  # noqa: E731
        {"model": str(parents["a"]), "parameters": {"weight": 1}}, {"model": str(other), "parameters": {"weight": 1}}]}
    _raises(two(strangers["wide"]), tmp_path, "architectures differ", "d_model=64", "d_model=32")
    _raises(two(strangers["tok"]), tmp_path, "tokenizers differ", "token")


def test_bad_configs(parents, tmp_path):
    a, b = str(parents["a"]), str(parents["b"])
    _raises({"merge_method": "average", "models": [a]}, tmp_path, "unknown merge_method 'average'", "linear")
    _raises({"merge_method": "ties", "models": [a, b]}, tmp_path, "ties needs a base_model")
    _raises({"merge_method": "ties", "base_model": a, "models": [{"model": b, "parameters": {"densty": 0.5}}]},
            tmp_path, "unknown parameter 'densty'", "density")
    _raises({"merge_method": "ties", "base_model": a, "models": [{"model": b, "parameters": {"density": 1.5}}]},
            tmp_path, "density=1.5", "[0, 1]")
    _raises({"merge_method": "linear", "models": [a]}, tmp_path, "needs parameter 'weight'")
    _raises({"merge_method": "linear", "models": [{"model": a, "parameters": {"weight": 1}},
                                                  {"model": b, "parameters": {"weight": -1}}]},
            tmp_path, "sum to 0")
    _raises({"merge_method": "slerp", "base_model": a, "models": [a, b, str(parents["base"])],
             "parameters": {"t": 0.5}}, tmp_path, "exactly one other model")
    _raises({"merge_method": "passthrough", "slices": [{"sources": [{"model": a, "layer_range": [0, 9]}]}]},
            tmp_path, "layer_range [0, 9]", "3 layers")
    _raises({"merge_method": "linear", "modles": [a]}, tmp_path, "unknown config key 'modles'")
    _raises({"merge_method": "linear", "models": [str(tmp_path / "nope")]}, tmp_path)

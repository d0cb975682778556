"""Same config, same inputs: llmkit's merge gives mergekit's output tensors.

mergekit runs on Hugging Face directories, so the tiny parents are exported with
our production HF writer, merged by both, and mergekit's output is read back
through our HF importer.
"""

from __future__ import annotations

import copy
import logging

import mergekit as mergekit  # a test extra (make test installs it --no-deps): missing must fail, not skip
import pytest
import torch
from mergekit.config import MergeConfiguration
from mergekit.merge import MergeOptions, run_merge

from llmkit.formats.hf import load_hf, save_hf
from llmkit.merge import merge_models
from llmkit.model import Transformer

from .conftest import perturbed, tiny_cfg

SLERP_T = [{"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]}, {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]},
           {"value": 0.5}]
CONFIGS = {
    "linear": {"merge_method": "linear", "models": [{"model": "a", "parameters": {"weight": 0.7}},
                                                    {"model": "b", "parameters": {"weight": 0.2}},
                                                    {"model": "base", "parameters": {"weight": 0.1}}]},
    "slerp": {"merge_method": "slerp", "base_model": "base", "models": [{"model": "base"}, {"model": "a"}],
              "parameters": {"t": SLERP_T}},
    "task_arithmetic": {"merge_method": "task_arithmetic", "base_model": "base",
                        "models": [{"model": "a", "parameters": {"weight": 0.8}},
                                   {"model": "b", "parameters": {"weight": -0.3}}],
                        "parameters": {"lambda": 0.9}},
    "ties": {"merge_method": "ties", "base_model": "base",
             "models": [{"model": "a", "parameters": {"weight": 0.6, "density": 0.4}},
                        {"model": "b", "parameters": {"weight": [0.2, 0.8], "density": 0.7}}]},
    "passthrough": {"merge_method": "passthrough",
                    "slices": [{"sources": [{"model": "a", "layer_range": [0, 2]}]},
                               {"sources": [{"model": "b", "layer_range": [1, 3]}]}]},
}


@pytest.fixture(scope="module")
def hf_parents(tmp_path_factory, tok):
    root = tmp_path_factory.mktemp("hf-parents")
    base = Transformer(tiny_cfg(tok.vocab_size)).init_weights(seed=0).eval()
    models = {"base": base, "a": perturbed(base, 1, 0.05), "b": perturbed(base, 2, 0.05)}
    return {k: save_hf(root / k, m.cfg, m.export_state_dict(), tok) for k, m in models.items()}


def _with_paths(cfg: dict, paths: dict) -> dict:
    cfg = copy.deepcopy(cfg)
    fix = lambda d: d.update(model=str(paths[d["model"]]))  # noqa: E731
    for m in cfg.get("models", []):
        fix(m)
    for s in cfg.get("slices", []):
        for src in s["sources"]:
            fix(src)
    if "base_model" in cfg:
        cfg["base_model"] = str(paths[cfg["base_model"]])
    cfg["dtype"] = "float32"
    return cfg


@pytest.mark.parametrize("method", list(CONFIGS))
def test_same_tensors_as_mergekit(hf_parents, tmp_path, method):
    cfg = _with_paths(CONFIGS[method], hf_parents)
    ours = merge_models(cfg, tmp_path / "ours")
    logging.getLogger("mergekit").setLevel(logging.ERROR)
    run_merge(MergeConfiguration.model_validate(cfg), str(tmp_path / "theirs"),
              options=MergeOptions(lazy_unpickle=False, copy_tokenizer=True, quiet=True))
    cfg_t, sd_t, _ = load_hf(tmp_path / "theirs")
    from llmkit.formats.loader import load_checkpoint_model

    cfg_o, sd_o, _, _ = load_checkpoint_model(ours.path)
    assert cfg_o.n_layer == cfg_t.n_layer
    sd_t.pop("lm_head.weight", None)  # tied: stored once on our side
    assert sd_o.keys() == sd_t.keys()
    for k in sd_o:
        torch.testing.assert_close(sd_o[k], sd_t[k], rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")

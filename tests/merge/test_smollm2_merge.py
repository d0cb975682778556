"""The real model: SLERP the packaged SmolLM2 (a GGUF parent, streamed from its cached conversion)
with a perturbed copy of itself; the merge loads, stays between its parents and still answers."""

from __future__ import annotations

import pytest
import torch

from llmkit.formats.loader import load_model, save_model
from llmkit.generate.api import generate_text
from llmkit.generate.sampling import SamplingParams
from llmkit.merge import merge_models
from llmkit.merge import methods as M


@pytest.mark.slow
def test_slerp_smollm2_with_a_perturbed_copy(tmp_path):
    lm = load_model("smollm2", device="cpu", dtype="float32")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        base_sd = {k: v.clone() for k, v in lm.model.export_state_dict().items()}
        for p in lm.model.parameters():
            if p.dim() == 2:  # 2% relative noise on every matrix
                p.add_(torch.randn(p.shape, generator=g) * p.std() * 0.02)
    noisy = save_model(tmp_path / "noisy", lm.model, lm.tokenizer, {"stage": "test", "name": "noisy"})
    noisy_sd = {k: v.clone() for k, v in lm.model.export_state_dict().items()}
    del lm
    res = merge_models({"merge_method": "slerp", "base_model": "smollm2",
                        "models": [{"model": "smollm2"}, {"model": str(noisy)}], "parameters": {"t": 0.5}},
                       tmp_path / "merged")
    merged = load_model(res.path, device="cpu", dtype="float32")
    assert merged.config.n_layer == 30 and merged.meta["lineage"]["parents"][0]["kind"] == "gguf"
    sd = merged.model.export_state_dict()
    k = "blocks.7.attn.wq.weight"
    torch.testing.assert_close(sd[k], M.slerp(0.5, base_sd[k], noisy_sd[k]))
    out = generate_text("What is the capital of France?", merged, chat=True,
                        params=SamplingParams(temperature=0, max_tokens=16))
    assert "Paris" in out.text

"""The eval harness end to end on the packaged model, plus its bad-input behaviour."""

import json

import pytest
import torch

from llmkit.core.errors import ConfigError
from llmkit.eval.harness import evaluate, score_items
from llmkit.eval.loglik import split_pair
from llmkit.eval.tasks import load_task


def test_yaml_task_end_to_end(tmp_path):
    rep = evaluate("smollm2", ["example_capitals"], out_dir=str(tmp_path), progress=False)
    res = rep["results"][0]
    assert res["n"] == 6 and 0 <= res["metrics"]["acc"] <= 1 and res["stderr"]["acc"] >= 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["complete"] is True and saved["results"][0]["task"] == "example_capitals"
    assert "example_capitals" in (tmp_path / "results.md").read_text()


def test_limit_beyond_dataset_clamps_with_a_note():
    rep = evaluate("smollm2", ["example_capitals"], limit=1000, progress=False)
    assert rep["results"][0]["n"] == 6 and "using all 6" in rep["results"][0]["notes"][0]


def test_bad_inputs_fail_before_loading(tmp_path):
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        evaluate("smollm2", ["nope"], out_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="limit"):
        evaluate("smollm2", ["arc_easy"], limit=0)
    assert not (tmp_path / "results.json").exists()


# (task, shots, items): 5-shot MMLU shares its dev examples across items, so it runs the shared-prefix path
SUBSETS = [("arc_easy", 0, 12), ("hellaswag", 0, 8), ("piqa", 0, 10), ("mmlu_high_school_geography", 0, 10),
           ("mmlu_high_school_geography", 5, 4)]


def _reference_lls(hf, tok, item):
    """The straightforward way: one full forward of context + continuation per choice, with transformers."""
    out = []
    for ctx, cont in item.requests():
        c_ids, x_ids = split_pair(tok, ctx, cont)
        ids = torch.tensor([c_ids + x_ids])
        with torch.no_grad():
            logp = hf(ids).logits[0, :-1].float().log_softmax(-1)
        n = len(x_ids)
        out.append(float(logp[-n:].gather(-1, torch.tensor(x_ids)[:, None]).sum()))
    return out


@pytest.mark.slow
def test_choices_match_transformers_reference(smollm2, hf_smollm2):
    """Per-item choices (acc and acc_norm) equal a transformers reference scorer on fixed subsets."""
    from llmkit.eval.metrics import acc_norm_choice, argmax

    for name, shots, n in SUBSETS:
        ours_acc, ref_acc = [], []
        items = load_task(name).items(shots=shots, limit=n)
        batched = score_items(smollm2, items)  # the production path: batched across items, as `llmkit eval` runs
        for item, scored in zip(items, batched):
            ours = [s.logprob for s in scored]
            ref = _reference_lls(hf_smollm2, smollm2.tokenizer, item)
            assert argmax(ours) == argmax(ref), (name, item.index, ours, ref)
            assert acc_norm_choice(ours, list(item.choices)) == acc_norm_choice(ref, list(item.choices))
            ours_acc.append(argmax(ours) == item.gold)
            ref_acc.append(argmax(ref) == item.gold)
            torch.testing.assert_close(torch.tensor(ours), torch.tensor(ref), atol=2e-2, rtol=1e-3)
        assert ours_acc == ref_acc, name

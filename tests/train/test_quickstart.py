"""The quickstart pipeline end to end, shrunk to seconds (the real run is `make demo`)."""

import pytest

from llmkit.train.quickstart import quickstart

pytestmark = pytest.mark.slow


def test_quickstart_small(tmp_path):
    from llmkit.eval.harness import small_eval

    rep = quickstart(name="qs", runs=str(tmp_path), train_seconds=4, corpus_mb=0.4, vocab_size=512,
                     ask_smollm=False, evaluate=lambda ckpt: small_eval(ckpt, limit=4))
    report = (tmp_path / "qs" / "report.md").read_text()
    for section in ("Samples before training", "Samples after training", "Run each step yourself",
                    "val_bits_per_byte", "loss.png", "llmkit pretrain", "llmkit data prepare",
                    "Small benchmark eval", "| arc_easy | 4 | acc_norm |", "llmkit eval --model"):
        assert section in report, section
    assert (tmp_path / "qs" / "model" / "loss.png").is_file()
    assert 0 < rep.numbers["val_bits_per_byte"] < 8
    assert rep.samples_before and rep.samples_after
    assert [r["task"] for r in rep.evals] == ["arc_easy", "hellaswag", "piqa"]
    assert all(0 <= r["value"] <= 1 and 0 < r["chance"] < 1 for r in rep.evals)

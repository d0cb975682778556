"""The quickstart pipeline end to end, shrunk to seconds (the real run is `make demo`)."""

import pytest

from llmkit.train.quickstart import quickstart

pytestmark = pytest.mark.slow


def test_quickstart_small(tmp_path):
    rep = quickstart(name="qs", runs=str(tmp_path), train_seconds=4, corpus_mb=0.4, vocab_size=512,
                     ask_smollm=False)
    report = (tmp_path / "qs" / "report.md").read_text()
    for section in ("Samples before training", "Samples after training", "Run each step yourself",
                    "val_bits_per_byte", "loss.png", "llmkit pretrain", "llmkit data prepare"):
        assert section in report, section
    assert (tmp_path / "qs" / "model" / "loss.png").is_file()
    assert 0 < rep.numbers["val_bits_per_byte"] < 8
    assert rep.samples_before and rep.samples_after

"""Perplexity / bits per byte on text files and prepared shards, against a brute-force oracle."""

import math

import pytest
import torch

from llmkit.core.errors import ConfigError
from llmkit.eval.perplexity import perplexity, token_nll, windows


def test_windows_score_every_target_once_with_enough_context():
    for n in range(2, 30):
        for w in range(1, 7):
            for s in range(1, w + 1):
                seen = []
                for b, e, f in windows(n, w, s):
                    assert e - 1 - b <= w and f >= 0  # the model never sees more than the window
                    seen += [(t, t - b) for t in range(b + f + 1, e)]
                assert [t for t, _ in seen] == list(range(1, n))
                assert all(ctx >= min(t, w - s) for t, ctx in seen)


def _oracle_nll(model, ids):
    with torch.no_grad():
        logp = model(torch.tensor([ids[:-1]]))[0].log_softmax(-1)
    return -float(logp.gather(-1, torch.tensor(ids[1:])[:, None]).sum())


def test_sliding_nll_equals_full_forward_inside_the_window(smollm2):
    ids = smollm2.tokenizer.encode("def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n" * 3)
    nll, n = token_nll(smollm2.model, ids, window=len(ids), stride=len(ids))
    assert n == len(ids) - 1 and nll == pytest.approx(_oracle_nll(smollm2.model, ids), rel=1e-4)
    # a window shorter than the text: every token still scored once, with less context
    nll2, n2 = token_nll(smollm2.model, ids, window=16, stride=8)
    assert n2 == n and nll2 > nll * 0.9


def test_perplexity_on_text_and_shards(smollm2, tmp_path):
    from llmkit.data.prepare import prepare
    from llmkit.data.sources import TextFile

    text = "The quick brown fox jumps over the lazy dog. " * 20
    (tmp_path / "a.txt").write_text(text)
    res = perplexity(smollm2, tmp_path / "a.txt", progress=False)
    assert res["bytes"] == len(text) and res["tokens"] == len(smollm2.tokenizer.encode(text))
    assert res["perplexity"] == pytest.approx(math.exp(res["bits_per_byte"] * math.log(2) * res["bytes"] / res["tokens"]))
    assert 1 < res["perplexity"] < 10  # repeated text is easy
    prepare([TextFile(tmp_path / "a.txt")], smollm2.tokenizer, tmp_path / "shards", val_fraction=0.0, progress=False)
    shard = perplexity(smollm2, f"ppl:{tmp_path / 'shards'}", split="train", progress=False)
    assert shard["bytes"] == len(text) and shard["perplexity"] < 10


def test_perplexity_bad_inputs(smollm2, gpt2_path, tmp_path):
    from llmkit.data.prepare import prepare
    from llmkit.data.sources import TextFile
    from llmkit.tokenizer import Tokenizer

    with pytest.raises(ConfigError, match="does not exist"):
        perplexity(smollm2, tmp_path / "missing.txt")
    (tmp_path / "e.txt").write_text("")
    with pytest.raises(ConfigError, match="too little text"):
        perplexity(smollm2, tmp_path / "e.txt")
    (tmp_path / "b.txt").write_text("some text to tokenize " * 10)
    prepare([TextFile(tmp_path / "b.txt")], Tokenizer.from_tiktoken_file(gpt2_path), tmp_path / "g",
            val_fraction=0.0, progress=False)
    with pytest.raises(ConfigError, match="another tokenizer"):
        perplexity(smollm2, tmp_path / "g", split="train")

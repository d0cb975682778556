"""The BERT encoder + pooling against sentence-transformers, through load_embedder."""

import numpy as np
import pytest
import torch

from llmkit.model.bert import l2_normalize, mean_pool

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "",
    "   ",
    "a",
    "Ünïcödé façade — naïve café, 日本語のテキスト, Ελληνικά, emoji 🚀🔥",
    "def attention(q, k, v):\n    return softmax(q @ k.T / sqrt(d)) @ v  # scaled dot product",
    "SELECT id, name FROM users WHERE created_at > '2024-01-01' ORDER BY id;",
    "LoRA freezes the base weights and learns a low-rank update B @ A. " * 60,  # past 256 tokens: truncated
    "What is retrieval-augmented generation?",
    "1 2 3 4 5 6 7 8 9 10 — numbers, [brackets], {braces}, <tags/> & ampersands",
]


def test_mean_pool_ignores_padding():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (1, 3, 2), last token is padding
    m = torch.tensor([[1, 1, 0]])
    assert torch.equal(mean_pool(h, m), torch.tensor([[2.0, 3.0]]))


def test_l2_normalize_known_value():
    x = l2_normalize(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
    assert torch.allclose(x[0], torch.tensor([0.6, 0.8])) and torch.equal(x[1], torch.zeros(2))


def test_batches_group_similar_lengths(embedder):
    lengths = [5, 300, 7, 6, 299]
    groups = embedder.batches(lengths, batch_size=2)
    assert sorted(i for g in groups for i in g) == list(range(5))
    assert groups[0] == [1, 4] and all(len(g) <= 2 for g in groups)


def test_parity_with_sentence_transformers(embedder):
    import sentence_transformers  # test extra: missing must fail, not skip

    from llmkit.core.assets import asset_path

    ref = sentence_transformers.SentenceTransformer(str(asset_path("minilm").parent), device="cpu")
    ours = embedder.embed(SENTENCES, batch_size=4)  # several padded batches of mixed lengths
    theirs = ref.encode(SENTENCES, convert_to_numpy=True)
    assert ours.shape == theirs.shape == (len(SENTENCES), 384) and ours.dtype == np.float32
    cos = (ours * theirs).sum(1) / np.linalg.norm(theirs, axis=1)
    assert cos.min() >= 0.9999, cos
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_batched_equals_one_by_one(embedder):
    batched = embedder.embed(SENTENCES, batch_size=16)
    single = np.stack([embedder.embed_query(s) for s in SENTENCES])
    np.testing.assert_allclose(batched, single, atol=2e-5)


def test_similar_texts_are_closer(embedder):
    q, pos, neg = embedder.embed(["How do I bake bread?", "A recipe for baking a loaf of bread.",
                                  "The stock market fell sharply today."])
    assert q @ pos > q @ neg + 0.2


def test_bad_embedder_path(tmp_path):
    from llmkit.core.errors import ModelNotFoundError
    from llmkit.generate.embed import load_embedder

    with pytest.raises(ModelNotFoundError, match="config.json"):
        load_embedder(tmp_path)

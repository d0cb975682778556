"""Data filters: MinHash estimates Jaccard, LSH dedup keeps one of each near-duplicate group, simple filters."""

import random

import numpy as np

from llmkit.data.filters import (jaccard, length_ok, looks_english, minhash, near_duplicates, regex_ok,
                                 shingles)


def test_minhash_estimates_jaccard():
    a = {f"w{i}" for i in range(100)}
    b = {f"w{i}" for i in range(40, 140)}  # J = 60 / 140
    est = float((minhash(a, 512) == minhash(b, 512)).mean())
    assert abs(est - jaccard(a, b)) < 3 * np.sqrt(0.43 * 0.57 / 512)
    assert np.array_equal(minhash(a, 64), minhash(set(a), 64))  # deterministic across calls / processes


def test_near_duplicates_keep_first_of_each_group():
    rng = random.Random(0)
    vocab = [f"word{i}" for i in range(500)]
    docs = [" ".join(rng.choice(vocab) for _ in range(60)) for _ in range(20)]
    near = docs[3].split()
    near[10] = "changed"  # one word of 60 differs: Jaccard of 3-shingles ~ 0.9
    texts = docs + [" ".join(near), docs[7].upper()]  # case-insensitive exact copy too
    kept = near_duplicates(texts, threshold=0.7)
    assert kept == list(range(20))
    assert jaccard(shingles(docs[3]), shingles(" ".join(near))) > 0.8


def test_simple_filters():
    assert length_ok("hello", 3, 10) and not length_ok("hi", 3) and not length_ok("x" * 11, 1, 10)
    assert regex_ok("answer: 42", must_match=r"\d+") and not regex_ok("answer", must_match=r"\d+")
    assert not regex_ok("as an AI language model", must_not_match="(?i)as an ai")
    assert looks_english("The model reads the tokens and predicts the next one.")
    assert not looks_english("Модель читает токены и предсказывает следующий.")
    assert not looks_english("Der Hund läuft schnell über die große Wiese im Park heute")

"""Filters for synthetic or scraped fine-tuning data: MinHash near-duplicates, length, regex, language.

    keep = near_duplicates(texts, threshold=0.8)        # indices of the texts to keep (first of each cluster)
    ok = [length_ok(t, 10, 2000) and regex_ok(t, r"\\d") and looks_english(t) for t in texts]

**MinHash.** The Jaccard similarity of two shingle sets A, B equals the
probability that a random hash function has its minimum on the same shingle
of A ∪ B. With ``num_perm`` independent hashes, the fraction of equal minima
estimates J(A, B) (standard error ~ sqrt(J(1-J)/num_perm)). **LSH banding**
splits the signature into ``bands`` of ``rows``; two texts become candidates
when any band agrees entirely, which happens with probability 1-(1-J^rows)^bands
— a steep S-curve around (1/bands)^(1/rows). Candidates are then checked
against the threshold on the full signature, so the output does not depend on
the banding, only the work does.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from typing import Sequence

import numpy as np

_PRIME = (1 << 61) - 1  # a Mersenne prime: (a·x + b) mod p is a universal hash family on 61-bit ints
_WORD = re.compile(r"\w+", re.UNICODE)


def shingles(text: str, k: int = 3) -> set[str]:
    """Word k-grams of the lowercased text (the whole text when it has fewer than k words)."""
    words = _WORD.findall(text.lower())
    if len(words) < k:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + k]) for i in range(len(words) - k + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _base_hashes(items: set[str]) -> np.ndarray:
    # stable across processes (Python's str hash is salted per process)
    return np.array([int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") % _PRIME
                     for s in items], dtype=np.uint64)


def minhash(items: set[str], num_perm: int = 128, seed: int = 0) -> np.ndarray:
    """(num_perm,) signature: min over items of (a_i·h(x) + b_i) mod p for num_perm random (a_i, b_i)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    a = rng.integers(1, _PRIME, num_perm, dtype=np.uint64).astype(object)
    b = rng.integers(0, _PRIME, num_perm, dtype=np.uint64).astype(object)
    if not items:
        return np.full(num_perm, _PRIME, dtype=np.uint64)
    h = _base_hashes(items).astype(object)  # Python ints: a·h overflows 64 bits
    sig = ((np.outer(a, h) + b[:, None]) % _PRIME).min(axis=1)
    return sig.astype(np.uint64)


def near_duplicates(texts: Sequence[str], threshold: float = 0.8, num_perm: int = 128, bands: int = 32,
                    k: int = 3, seed: int = 0) -> list[int]:
    """Indices of the texts to keep: the first text of each group whose estimated Jaccard >= threshold."""
    assert num_perm % bands == 0, "num_perm must be a multiple of bands"
    rows = num_perm // bands
    sigs = [minhash(shingles(t, k), num_perm, seed) for t in texts]
    buckets: dict[tuple, list[int]] = defaultdict(list)
    kept: list[int] = []
    for i, sig in enumerate(sigs):
        candidates = set()
        keys = [(band, sig[band * rows:(band + 1) * rows].tobytes()) for band in range(bands)]
        for key in keys:
            candidates.update(buckets.get(key, ()))
        if any(float((sigs[j] == sig).mean()) >= threshold for j in candidates):
            continue  # a near-duplicate of a text already kept
        kept.append(i)
        for key in keys:
            buckets[key].append(i)
    return kept


def length_ok(text: str, min_chars: int = 1, max_chars: int | None = None) -> bool:
    n = len(text.strip())
    return n >= min_chars and (max_chars is None or n <= max_chars)


def regex_ok(text: str, must_match: str | None = None, must_not_match: str | None = None) -> bool:
    """True when ``must_match`` is found (if given) and ``must_not_match`` is not (if given)."""
    if must_match is not None and re.search(must_match, text) is None:
        return False
    return must_not_match is None or re.search(must_not_match, text) is None


_EN_STOPWORDS = frozenset("the a an and or of to in is are was were be it that this for on with as at by from "
                          "you i we they he she not but what which how can do does".split())


def looks_english(text: str, min_latin: float = 0.8, min_stopwords: float = 0.05) -> bool:
    """Heuristic: mostly Latin letters, and enough common English function words among the words.

    Short texts (fewer than 5 words) pass the stopword test by default: too little evidence.
    """
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    latin = sum("a" <= c.lower() <= "z" for c in letters) / len(letters)
    words = _WORD.findall(text.lower())
    stop = sum(w in _EN_STOPWORDS for w in words) / len(words) if len(words) >= 5 else 1.0
    return latin >= min_latin and stop >= min_stopwords

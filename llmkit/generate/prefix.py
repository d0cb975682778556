"""Prompt-prefix reuse: compute the KV of a token prefix that many prompts share once.

Few-shot prompts (GSM8K's fixed chain-of-thought examples, a long system prompt) start with
hundreds of identical tokens. ``PrefixCache`` keeps the keys and values of the last shared
prefix it computed, so the next batch that starts with it skips that part of the prefill.
A prefix is only worth a separate forward when it is long (``min_len``).
"""

from __future__ import annotations

from typing import Sequence

import torch

from llmkit.model import KVCache, Transformer


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common leading run of two id sequences."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def shared_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """Tokens every prompt starts with, leaving at least one token of each to run (it predicts)."""
    first = prompts[0]
    n = min(len(p) for p in prompts) - 1
    for p in prompts[1:]:
        n = min(n, common_prefix(first, p))
    return max(n, 0)


class PrefixCache:
    """The KV of one token prefix (batch 1), recomputed only when the prefix changes."""

    def __init__(self, model: Transformer, min_len: int = 64):
        self.model = model
        self.min_len = min_len
        self._ids: tuple[int, ...] = ()
        self._kv: KVCache | None = None

    @torch.inference_mode()
    def get(self, ids: Sequence[int]) -> KVCache:
        """A cache whose first len(ids) slots hold the keys/values of ``ids`` at positions 0.."""
        ids = tuple(int(t) for t in ids)
        if self._kv is None or self._ids[:len(ids)] != ids:
            w = self.model.tok_emb.weight
            kv = KVCache.allocate(self.model.cfg, 1, len(ids), dtype=w.dtype, device=w.device)
            self.model(torch.tensor([ids], device=w.device), kv_cache=kv, last_only=True)
            self._ids, self._kv = ids, kv
        return self._kv

    def fill(self, cache: KVCache, prompts: Sequence[Sequence[int]], start: torch.Tensor) -> int:
        """Copy the shared prefix of left-padded ``prompts`` into ``cache`` (row b's prompt begins at
        slot start[b]) and advance it so the prefill can go on from there. Returns the first slot
        the prefill must still run (0 when nothing is shared)."""
        n = shared_prefix(prompts)
        if n < self.min_len:
            return 0
        kv = self.get(prompts[0][:n])
        for b, s in enumerate(start.tolist()):
            cache.k[:, b, :, s:s + n] = kv.k[:, 0, :, :n]
            cache.v[:, b, :, s:s + n] = kv.v[:, 0, :, :n]
        # rows with more padding re-run the last (start[b] - min start) tokens of their prefix: same
        # values, written over the copy, so every row's real tokens from here on are in the window
        first = int(start.min()) + n
        cache.advance(first)
        return first

"""Batched log-likelihood scoring of many items: group by length, pad, share prefixes.

``score_choices`` (loglik.py) scores the choices of one context. A benchmark has
thousands of contexts, and two things make scoring them cheaper than one forward
per (context, choice) pair:

- **Shared prefixes across items.** Few-shot prompts that reuse the same examples
  (MMLU takes the first five dev questions of the subject for every item) start
  with hundreds of identical tokens. Runs of consecutive contexts that share a long
  token prefix compute it once into a KV cache and copy it per item. Sharing is
  decided on *token ids* of the full context, so the ids are exactly those of
  encoding each context alone.
- **Batching across items.** The other contexts are sorted by length and run
  ``batch`` at a time, left-padded (KVCache masks the padding), so one forward
  serves many items. The logits at the last context position already give every
  choice's first token, so one-token answers (MMLU's " A") need no second forward;
  longer continuations run as one right-padded batch on top of the cache
  (padding after a sequence never changes it).

Results equal ``score_reference`` (the full-forward oracle) up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from llmkit.eval.loglik import Scored, score_reference
from llmkit.generate.prefix import common_prefix
from llmkit.model import KVCache, Transformer


@dataclass
class _Unit:
    """One context and the continuations scored after it."""

    ctx: list[int]
    conts: list[list[int]]
    slots: list[tuple[int, int]]  # (group, choice) each continuation's result goes to


def _units(groups: Sequence[Sequence[tuple[list[int], list[int]]]]) -> list[_Unit]:
    """Merge requests with the same context (an item's choices) into one unit, in order."""
    units: list[_Unit] = []
    for g, reqs in enumerate(groups):
        by_ctx: dict[tuple[int, ...], _Unit] = {}
        for j, (ctx, cont) in enumerate(reqs):
            assert len(ctx) > 0 and len(cont) > 0, "split_pair gives a context and a continuation token"
            key = tuple(ctx)
            if key not in by_ctx:
                by_ctx[key] = _Unit(list(ctx), [], [])
                units.append(by_ctx[key])
            by_ctx[key].conts.append(list(cont))
            by_ctx[key].slots.append((g, j))
    return units


def _prefix_runs(units: list[_Unit], min_prefix: int) -> list[tuple[list[int], int]]:
    """Split units into runs of consecutive contexts sharing >= min_prefix leading tokens.

    Returns (unit indices, shared prefix length); a lone unit has shared length 0.
    """
    runs: list[tuple[list[int], int]] = []
    for i, u in enumerate(units):
        if runs:
            idx, shared = runs[-1]
            common = common_prefix(units[idx[-1]].ctx, u.ctx)
            if len(idx) > 1:
                common = min(common, shared)  # what every unit of the run has in common
            if common >= min_prefix:
                runs[-1] = (idx + [i], common)
                continue
        runs.append(([i], 0))
    return runs


class BatchScorer:
    """Score groups of (context ids, continuation ids) requests; one list of ``Scored`` per group."""

    def __init__(self, model: Transformer, batch: int = 16, max_logits: int = 2 ** 25, min_prefix: int = 64):
        self.model = model
        self.batch = batch  # contexts per forward
        self.max_logits = max_logits  # cap on rows x tokens x vocab of one continuation forward
        self.min_prefix = min_prefix  # shorter shared prefixes are not worth a separate cache

    @property
    def device(self) -> torch.device:
        return self.model.tok_emb.weight.device

    def score(self, groups: Sequence[Sequence[tuple[list[int], list[int]]]],
              on_group: Callable[[int, list[Scored]], None] | None = None) -> list[list[Scored]]:
        """Scores in request order; ``on_group(g, scores)`` is called as soon as group g is complete."""
        out: list[list[Scored | None]] = [[None] * len(reqs) for reqs in groups]
        pending = [len(reqs) for reqs in groups]

        def put(g: int, j: int, s: Scored) -> None:
            out[g][j] = s
            pending[g] -= 1
            if pending[g] == 0 and on_group is not None:
                on_group(g, out[g])  # type: ignore[arg-type]

        units = _units(groups)
        window = self.model.cfg.max_seq_len
        fits = [u for u in units if len(u.ctx) + max(len(c) for c in u.conts) - 1 <= window]
        for u in units:  # over the window: each continuation keeps its own tail of context
            if len(u.ctx) + max(len(c) for c in u.conts) - 1 > window:
                for cont, (g, j) in zip(u.conts, u.slots):
                    put(g, j, score_reference(self.model, u.ctx, cont))
        loose: list[_Unit] = []
        for idx, shared in _prefix_runs(fits, self.min_prefix):
            if not shared:
                loose.extend(fits[i] for i in idx)
                continue
            prefix = self._prefill(fits[idx[0]].ctx[:shared])
            for i in idx:
                self._write(put, [fits[i]], self._score_units([fits[i]], prefix, shared))
        loose.sort(key=lambda u: len(u.ctx))  # group by length: little padding per batch
        for chunk in self._chunks(loose):
            self._write(put, chunk, self._score_units(chunk))
        assert all(s is not None for row in out for s in row)
        return out  # type: ignore[return-value]

    def _chunks(self, units: list[_Unit]):
        V = self.model.cfg.vocab_size
        chunk: list[_Unit] = []
        for u in units:
            trial = chunk + [u]
            rows = sum(len(x.conts) for x in trial)
            longest = max(len(c) for x in trial for c in x.conts)
            if chunk and (len(trial) > self.batch or rows * longest * V > self.max_logits):
                yield chunk
                trial = [u]
            chunk = trial
        if chunk:
            yield chunk

    @staticmethod
    def _write(put, units: list[_Unit], scored: list[list[Scored]]) -> None:
        for u, res in zip(units, scored):
            for (g, j), s in zip(u.slots, res):
                put(g, j, s)

    @torch.inference_mode()
    def _prefill(self, ids: list[int]) -> KVCache:
        cache = KVCache.allocate(self.model.cfg, 1, len(ids), dtype=self.model.tok_emb.weight.dtype,
                                 device=self.device)
        self.model(torch.tensor([ids], device=self.device), kv_cache=cache, last_only=True)
        return cache

    @torch.inference_mode()
    def _score_units(self, units: list[_Unit], prefix: KVCache | None = None, shared: int = 0) -> list[list[Scored]]:
        """Left-padded contexts in one forward, then every continuation's remaining tokens in another."""
        model, dev = self.model, self.device
        if prefix is not None:
            assert len(units) == 1
            shared = min(shared, len(units[0].ctx) - 1)  # the last context token must run: it predicts
        rest = [u.ctx[shared:] for u in units]
        longest_ctx = max(len(r) for r in rest)
        tail = max(len(c) for u in units for c in u.conts) - 1  # continuation tokens fed after the context
        start = torch.tensor([longest_ctx - len(r) for r in rest])
        cache = KVCache.allocate(model.cfg, len(units), shared + longest_ctx + tail,
                                 dtype=model.tok_emb.weight.dtype, device=dev, start=start)
        if prefix is not None and shared:
            cache.k[:, :, :, :shared] = prefix.k[:, :, :, :shared]
            cache.v[:, :, :, :shared] = prefix.v[:, :, :, :shared]
            cache.advance(shared)
        idx = torch.zeros(len(units), longest_ctx, dtype=torch.long)
        for b, r in enumerate(rest):
            idx[b, start[b]:] = torch.tensor(r)
        first = model(idx.to(dev), kv_cache=cache, last_only=True)[:, -1].float().log_softmax(-1).cpu()  # (G, V)
        owner = [b for b, u in enumerate(units) for _ in u.conts]
        conts = [c for u in units for c in u.conts]
        later = None
        if tail > 0:
            cache.select(owner)  # one cache row per continuation
            rows = torch.zeros(len(conts), tail, dtype=torch.long)
            for r, c in enumerate(conts):
                rows[r, :len(c) - 1] = torch.tensor(c[:-1])
            later = model(rows.to(dev), kv_cache=cache).float().log_softmax(-1).cpu()  # (R, tail, V)
        scored = [_scored(first[owner[r]], later[r] if later is not None else None, c) for r, c in enumerate(conts)]
        out, r = [], 0
        for u in units:
            out.append(scored[r:r + len(u.conts)])
            r += len(u.conts)
        return out


def _scored(first: torch.Tensor, later: torch.Tensor | None, cont: list[int]) -> Scored:
    """first (V,) predicts cont[0]; later (tail, V) row t predicts cont[t + 1]."""
    lp = float(first[cont[0]])
    greedy = int(first.argmax()) == cont[0]
    if len(cont) > 1:
        assert later is not None
        target = torch.tensor(cont[1:])
        rows = later[: len(cont) - 1]
        lp += float(rows.gather(-1, target[:, None]).sum())
        greedy = greedy and bool((rows.argmax(-1) == target).all())
    return Scored(lp, greedy, len(cont))

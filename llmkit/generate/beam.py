"""Beam search: keep the num_beams best partial sequences by total log-probability.

Each step scores every (beam, next token) pair, keeps the 2*num_beams best
candidates, moves those ending in a stop token into a list of finished
hypotheses (scored by logprob / length**length_penalty), and continues with
the num_beams best that did not end. The KV cache rows are reordered to
follow their beams, so each step is still one forward of num_beams rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from llmkit.core.errors import ContextOverflowError, GenerationError
from llmkit.model import KVCache, Transformer


@dataclass
class Beam:
    token_ids: list[int]
    logprob: float  # sum of token log-probs
    score: float  # logprob / len**length_penalty
    finished: bool


@torch.inference_mode()
def beam_search(model: Transformer, prompt: Sequence[int], num_beams: int = 4, max_tokens: int = 32,
                stop_ids: Sequence[int] = (), length_penalty: float = 1.0,
                early_stopping: bool = True) -> list[Beam]:
    """Return up to num_beams hypotheses, best first. Stop tokens are not included in token_ids."""
    if num_beams < 1:
        raise GenerationError(f"num_beams={num_beams} must be >= 1", "use --num-beams 1 or more")
    if not prompt:
        raise GenerationError("empty prompt", "give at least one token of input")
    ctx = model.cfg.max_seq_len
    if len(prompt) + max_tokens > ctx:
        raise ContextOverflowError(f"prompt of {len(prompt)} tokens + max_tokens {max_tokens} exceeds the "
                                   f"context window of {ctx}", "shorten the prompt or lower max_tokens")
    device = model.tok_emb.weight.device
    stop = set(stop_ids)
    cache = KVCache.allocate(model.cfg, 1, len(prompt) + max_tokens, model.tok_emb.weight.dtype, device)
    logits = model(torch.tensor([list(prompt)], device=device), kv_cache=cache, last_only=True)[:, -1]
    cache.select([0] * num_beams)  # every beam starts from the same prefix
    seqs: list[list[int]] = [[] for _ in range(num_beams)]
    scores = torch.full((num_beams,), float("-inf"))
    scores[0] = 0.0  # identical beams at step 0: only the first may expand, or we get duplicates
    logits = logits.expand(num_beams, -1)
    finished: list[Beam] = []

    def hyp_score(logprob: float, length: int) -> float:
        return logprob / max(length, 1) ** length_penalty

    for step in range(max_tokens):
        logp = logits.float().log_softmax(-1).cpu()  # (K, V)
        total = (scores[:, None] + logp).view(-1)  # (K*V,)
        top_vals, top_idx = total.topk(min(2 * num_beams, total.numel()))
        vocab = logp.shape[-1]
        next_beams, next_scores, next_tokens, parents = [], [], [], []
        for rank, (val, flat) in enumerate(zip(top_vals.tolist(), top_idx.tolist())):
            parent, tok = divmod(flat, vocab)
            if val == float("-inf"):
                break
            if tok in stop:
                if rank < num_beams:  # only a candidate that would have made the beam may finish
                    finished.append(Beam(list(seqs[parent]), val, hyp_score(val, len(seqs[parent]) + 1), True))
                continue
            parents.append(parent)
            next_tokens.append(tok)
            next_scores.append(val)
            next_beams.append(seqs[parent] + [tok])
            if len(next_beams) == num_beams:
                break
        finished.sort(key=lambda b: b.score, reverse=True)
        finished = finished[:num_beams]
        if not next_beams or _done(finished, next_scores, num_beams, step + 1, hyp_score, early_stopping):
            break
        seqs = next_beams
        scores = torch.tensor(next_scores)
        if step == max_tokens - 1:
            break
        cache.select(parents)  # reorder cache rows to follow their beams
        logits = model(torch.tensor(next_tokens, device=device)[:, None], kv_cache=cache)[:, -1]
    live = [Beam(s, float(sc), hyp_score(float(sc), len(s)), False) for s, sc in zip(seqs, scores.tolist())
            if sc != float("-inf")]
    return sorted(finished + live, key=lambda b: b.score, reverse=True)[:num_beams]


def _done(finished, live_scores, num_beams, length, hyp_score, early_stopping) -> bool:
    if len(finished) < num_beams:
        return False
    if early_stopping:
        return True
    # no live beam can beat the worst finished one any more (scores only fall with length)
    return hyp_score(max(live_scores), length) <= finished[-1].score

"""Log-likelihood of continuations given a context: the core of multiple-choice evaluation.

For each (context, continuation) we want log P(continuation | context) summed over the
continuation's tokens, and whether greedy decoding would have produced it. We follow
lm-evaluation-harness's formulation so numbers are comparable:

- trailing whitespace of the context moves to the front of the continuation, then the
  continuation's tokens are those of encode(context + continuation) past encode(context)
  (so a word keeps its leading space inside one token, as in natural text);
- an empty context is replaced by the BOS/end-of-text token;
- inputs longer than the context window keep their last tokens (scored one by one).

Choices of one question share their context, so the context is run once into a KV
cache, the cache is copied to one row per choice, and all continuations are scored
in one batched forward (right-padded: padding after a sequence never affects it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from llmkit.model import KVCache, Transformer


@dataclass
class Scored:
    logprob: float  # sum of log P(token) over the continuation
    greedy: bool  # every continuation token was the argmax
    n_tokens: int


def split_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of (context, continuation) the way the reference harness splits them."""
    n_space = len(context) - len(context.rstrip())
    if n_space:
        continuation = context[-n_space:] + continuation
        context = context[:-n_space]
    whole = tokenizer.encode(context + continuation, allowed_special="all")
    ctx = tokenizer.encode(context, allowed_special="all")
    if not ctx:  # nothing to condition on: start from the end-of-text / BOS token
        start = tokenizer.eos_id if tokenizer.bos_id is None else tokenizer.bos_id
        return [start], whole
    return ctx, whole[len(ctx):]


@torch.inference_mode()
def score_choices(model: Transformer, context_ids: list[int], continuations: Sequence[list[int]]) -> list[Scored]:
    """Score several continuations of one shared context (one prefill, one batched forward)."""
    device = model.tok_emb.weight.device
    longest = max(len(c) for c in continuations)
    assert longest > 0, "a continuation must have at least one token"
    if len(context_ids) + longest - 1 > model.cfg.max_seq_len:
        # over the window: each continuation keeps a different amount of context, so score one by one
        return [score_reference(model, context_ids, c) for c in continuations]
    K, C = len(continuations), len(context_ids)
    cache = KVCache.allocate(model.cfg, 1, C + longest, dtype=model.tok_emb.weight.dtype, device=device)
    if C > 1:
        model(torch.tensor([context_ids[:-1]], device=device), kv_cache=cache)
    cache.select([0] * K)
    # each row: last context token + continuation minus its last token predicts the continuation
    rows = torch.zeros(K, longest, dtype=torch.long)
    for k, cont in enumerate(continuations):
        seq = [context_ids[-1]] + cont[:-1]
        rows[k, :len(seq)] = torch.tensor(seq)
    logp = model(rows.to(device), kv_cache=cache).float().log_softmax(-1).cpu()  # (K, longest, V)
    out = []
    for k, cont in enumerate(continuations):
        target = torch.tensor(cont)
        lp = logp[k, :len(cont)]
        picked = lp.gather(-1, target[:, None]).squeeze(-1)
        out.append(Scored(float(picked.sum()), bool((lp.argmax(-1) == target).all()), len(cont)))
    return out


@torch.inference_mode()
def score_reference(model: Transformer, context_ids: list[int], continuation: list[int]) -> Scored:
    """The obvious version: one full forward of context + continuation. The oracle for score_choices."""
    ids = (context_ids + continuation)[-(model.cfg.max_seq_len + 1):]  # keep the last tokens, as the harness does
    logp = model(torch.tensor([ids[:-1]], device=model.tok_emb.weight.device))[0].float().log_softmax(-1).cpu()
    n = len(continuation)
    lp, target = logp[-n:], torch.tensor(continuation)
    return Scored(float(lp.gather(-1, target[:, None]).sum()), bool((lp.argmax(-1) == target).all()), n)

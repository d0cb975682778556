"""Speculative decoding (greedy): guess k tokens cheaply, check them with ONE target forward.

    out = speculative_greedy(model, prompt_ids, max_tokens=64)                       # prompt lookup
    out = speculative_greedy(model, prompt_ids, max_tokens=64, draft=small_model)     # a draft model

Each round feeds [last, d1..dk] to the target; its argmax after every prefix says
which guesses it would itself have produced. The longest agreeing run d1..dn is
kept plus the target's own next token, so the output is exactly greedy decoding
of the target, and a round yields 1..k+1 tokens for one weight pass. The cache
is rolled back by moving its write position (rejected slots get overwritten).

Guesses come from a draft model sharing the vocabulary, or with no draft from
prompt lookup: the continuation of the latest earlier occurrence of the trailing
n-gram (cheap and strong when the output copies the input: code edits, RAG, JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from llmkit.core.errors import GenerationError
from llmkit.model import KVCache, Transformer


@dataclass
class SpeculativeResult:
    token_ids: list[int]
    finish_reason: str  # "stop" | "length"
    rounds: int = 0  # target forwards after the prefill
    proposed: int = 0
    accepted: int = 0
    history: list[int] = field(default_factory=list)  # accepted guesses per round

    @property
    def acceptance(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0


def ngram_proposal(seq: Sequence[int], k: int, max_ngram: int = 3, min_ngram: int = 1) -> list[int]:
    """Up to k tokens that followed the latest earlier occurrence of seq's trailing n-gram.

    >>> ngram_proposal([1, 2, 3, 9, 1, 2], k=2)
    [3, 9]
    """
    n_seq = len(seq)
    for n in range(min(max_ngram, n_seq - 1), min_ngram - 1, -1):
        tail = list(seq[n_seq - n:])
        for start in range(n_seq - n - 1, -1, -1):  # latest match first, never the tail itself
            if list(seq[start:start + n]) == tail:
                return list(seq[start + n:start + n + k])
    return []


def check_draft(model: Transformer, draft: Transformer | None) -> None:
    """A draft must share the target's vocabulary: its guesses are token ids of the target."""
    if draft is not None and draft.cfg.vocab_size != model.cfg.vocab_size:
        raise GenerationError(f"the draft model's vocabulary ({draft.cfg.vocab_size}) differs from the "
                              f"target's ({model.cfg.vocab_size})", "use a draft trained with the same tokenizer")


class Draft:
    """A draft model with its own cache that trails the accepted sequence."""

    def __init__(self, model: Transformer, capacity: int):
        self.model = model
        dtype = model.tok_emb.weight.dtype
        self.cache = KVCache.allocate(model.cfg, 1, capacity, dtype=dtype, device=model.tok_emb.weight.device)

    def propose(self, seq: list[int], k: int) -> list[int]:
        dev = self.model.tok_emb.weight.device
        fresh = seq[self.cache.pos:]  # what the draft has not seen yet (>= 1 token)
        logits = self.model(torch.tensor([fresh], device=dev), kv_cache=self.cache, last_only=True)[0, -1]
        out = [int(logits.argmax())]
        while len(out) < k:
            logits = self.model(torch.tensor([[out[-1]]], device=dev), kv_cache=self.cache)[0, -1]
            out.append(int(logits.argmax()))
        return out

    def rollback(self, valid: int) -> None:
        self.cache.pos = min(self.cache.pos, valid)


@torch.inference_mode()
def speculative_greedy(model: Transformer, prompt: Sequence[int], max_tokens: int, stop_ids: Sequence[int] = (),
                       draft: Transformer | None = None, k: int = 4, max_ngram: int = 3) -> SpeculativeResult:
    """Greedy decoding of `model`, accelerated by guesses; identical tokens to plain greedy."""
    prompt = [int(t) for t in prompt]
    ctx = model.cfg.max_seq_len
    if not prompt or len(prompt) + max_tokens + k + 1 > ctx:
        raise GenerationError(f"prompt of {len(prompt)} tokens + max_tokens {max_tokens} does not fit {ctx}",
                              "shorten the prompt or lower max_tokens")
    if k < 1:
        raise GenerationError(f"k={k}", "propose at least one token per round")
    check_draft(model, draft)
    dev = model.tok_emb.weight.device
    stops = set(stop_ids)
    capacity = len(prompt) + max_tokens + k + 1
    cache = KVCache.allocate(model.cfg, 1, capacity, dtype=model.tok_emb.weight.dtype, device=dev)
    drafter = Draft(draft, capacity) if draft is not None else None
    logits = model(torch.tensor([prompt], device=dev), kv_cache=cache, last_only=True)[0, -1]
    seq, out = list(prompt), []
    res = SpeculativeResult(out, "length")
    nxt = int(logits.argmax())  # the target's own next token: always correct, not yet in the cache
    while True:
        if nxt in stops:
            res.finish_reason = "stop"
            break
        out.append(nxt)
        seq.append(nxt)
        if len(out) >= max_tokens:
            break
        room = min(k, max_tokens - len(out))
        guess = drafter.propose(seq, room) if drafter else ngram_proposal(seq, room, max_ngram)
        base = cache.pos  # the slot nxt goes into
        logits = model(torch.tensor([[nxt] + guess], device=dev), kv_cache=cache)[0]  # (1+g, V)
        want = logits.argmax(-1).tolist()  # want[i]: the target's token after nxt, guess[:i]
        n = 0
        while n < len(guess) and guess[n] == want[n] and guess[n] not in stops:
            n += 1
        res.rounds += 1
        res.proposed += len(guess)
        res.accepted += n
        res.history.append(n)
        for t in guess[:n]:
            out.append(t)
            seq.append(t)
        cache.pos = base + 1 + n  # keep nxt and the accepted guesses; drop the rest
        if drafter:
            drafter.rollback(len(seq) - 1)
        if len(out) >= max_tokens:
            del out[max_tokens:]
            break
        nxt = want[n]
    return res


def layer_skip_draft(model: Transformer, n_layers: int) -> Transformer:
    """A self-speculative draft: the target's first n_layers blocks + its norm and head (shared weights)."""
    if not 1 <= n_layers < model.cfg.n_layer:
        raise GenerationError(f"n_layers={n_layers}", f"pick 1..{model.cfg.n_layer - 1}")
    draft = Transformer.__new__(Transformer)
    nn.Module.__init__(draft)
    draft.cfg = model.cfg.replace(n_layer=n_layers)
    for name, child in model.named_children():
        setattr(draft, name, nn.ModuleList(list(child)[:n_layers]) if name == "blocks" else child)
    for name, buf in model.named_buffers(recurse=False):
        draft.register_buffer(name, buf, persistent=False)
    draft._rope_len = model._rope_len
    return draft.eval()

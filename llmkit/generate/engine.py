"""The generation engine: prefill + decode over a preallocated KV cache.

    engine = Engine(model, tokenizer)
    out = engine.generate([ids_a, ids_b], SamplingParams(max_tokens=32, temperature=0))
    for delta in engine.stream(ids, params): print(delta.text, end="")

Rows of different lengths are left-padded into one batch (see KVCache), so one
forward per step serves every row, each with its own sampling parameters.
Finished rows leave the batch at once, so the rest decode faster. With ``prefix_cache=True``
a long prefix that all prompts of a batch share is computed once and reused (llmkit.generate.prefix).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from llmkit.core.errors import ContextOverflowError, GenerationError
from llmkit.generate.prefix import PrefixCache
from llmkit.generate.sampling import SamplingParams, process_logits, sample, uses_penalties
from llmkit.generate.text import TextStream
from llmkit.model import KVCache, Transformer

# End-of-turn tokens of common chat formats: stop on them by default.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "<|end_of_text|>", "</s>", "<end_of_turn>")


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)  # (id, logprob), best first


@dataclass
class Delta:
    """One step of one row: the new token and the text that became safe to show."""

    row: int
    token_id: int | None
    text: str
    finish_reason: str | None = None  # "stop" | "length" when the row ends
    logprob: TokenLogprob | None = None


@dataclass
class Completion:
    token_ids: list[int]
    text: str
    finish_reason: str
    prompt_tokens: int
    logprobs: list[TokenLogprob] | None = None
    stop_logprob: TokenLogprob | None = None  # the stop token that ended it (not in token_ids), when logged


@dataclass
class Row:
    index: int
    prompt: list[int]
    params: SamplingParams
    stream: TextStream
    stop_ids: set[int]
    generator: torch.Generator | None
    tokens: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish: str | None = None
    prompt_mask: torch.Tensor | None = None  # (1, V) prompt tokens, for the repetition penalty


class Engine:
    def __init__(self, model: Transformer, tokenizer, default_stop_ids: Sequence[int] | None = None,
                 prefix_cache: bool = False):
        self.model = model.eval()
        # reuse the KV of a long prompt prefix that every row of a batch shares (few-shot prompts)
        self.prefix = PrefixCache(model) if prefix_cache else None
        self.tokenizer = tokenizer
        if default_stop_ids is None:
            default_stop_ids = end_of_turn_ids(tokenizer)
        self.default_stop_ids = set(default_stop_ids)
        self.special_ids = set(tokenizer.special_tokens.values())
        self.pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0

    @property
    def device(self) -> torch.device:
        return self.model.tok_emb.weight.device

    # ---- public API ------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Sequence[int]],
                 params: SamplingParams | Sequence[SamplingParams] | None = None) -> list[Completion]:
        rows = self.prepare(prompts, params)
        for _ in self._run(rows):
            pass
        return [Completion(r.tokens, r.stream.text, r.finish or "length", len(r.prompt),
                           r.logprobs if r.params.logprobs is not None else None) for r in rows]

    def stream(self, prompt: Sequence[int], params: SamplingParams | None = None) -> Iterator[Delta]:
        """Yield text deltas for one prompt as tokens are produced."""
        return self.stream_batch([prompt], params)

    def stream_batch(self, prompts: Sequence[Sequence[int]],
                     params: SamplingParams | Sequence[SamplingParams] | None = None) -> Iterator[Delta]:
        rows = self.prepare(prompts, params)
        for deltas in self._run(rows):
            yield from deltas

    # ---- row-level API: the batch scheduler (llmkit.generate.scheduler) drives rows with these ----
    def prepare(self, prompts, params) -> list[Row]:
        """Validate prompts (ids, context window) and params into one Row each; raises typed errors."""
        if not prompts:
            raise GenerationError("no prompts given", "pass at least one prompt")
        if params is None:
            params = SamplingParams()
        plist = list(params) if isinstance(params, (list, tuple)) else [params] * len(prompts)
        if len(plist) != len(prompts):
            raise GenerationError(f"{len(plist)} sampling params for {len(prompts)} prompts", "pass one per prompt")
        ctx = self.model.cfg.max_seq_len
        rows = []
        for i, (prompt, p) in enumerate(zip(prompts, plist)):
            prompt = [int(t) for t in prompt]
            if not prompt:
                raise GenerationError("empty prompt", "give at least one token of input")
            bad = [t for t in prompt if not 0 <= t < self.model.cfg.vocab_size]
            if bad:
                raise GenerationError(f"token id {bad[0]} is outside the vocabulary (size {self.model.cfg.vocab_size})",
                                      "encode prompts with this model's tokenizer")
            if len(prompt) >= ctx:
                raise ContextOverflowError(
                    f"prompt of {len(prompt)} tokens exceeds the context window of {ctx}",
                    f"shorten the prompt to at most {ctx - 1} tokens (nothing is cut silently)")
            if len(prompt) + p.max_tokens > ctx:
                raise ContextOverflowError(
                    f"prompt of {len(prompt)} tokens + max_tokens {p.max_tokens} exceeds the context window of {ctx}",
                    f"shorten the prompt or set max_tokens <= {max(ctx - len(prompt), 0)}")
            stop_ids = set(p.stop_token_ids) | (set() if p.ignore_eos else self.default_stop_ids)
            gen = torch.Generator().manual_seed(p.seed) if p.seed is not None else None
            stream = TextStream(self.tokenizer.token_bytes, p.stop, skip_ids=self.special_ids)
            rows.append(Row(i, prompt, p, stream, stop_ids, gen))
        return rows

    # ---- internals -------------------------------------------------------------------------------
    @torch.inference_mode()
    def _run(self, rows: list[Row]) -> Iterator[list[Delta]]:
        live = [r for r in rows if r.params.max_tokens > 0]
        for r in rows:
            if r.params.max_tokens == 0:
                r.finish = "length"
        if not live:
            return
        B = len(live)
        longest = max(len(r.prompt) for r in live)
        steps = max(r.params.max_tokens for r in live)
        start = torch.tensor([longest - len(r.prompt) for r in live])
        idx = torch.full((B, longest), self.pad_id, dtype=torch.long)
        for b, r in enumerate(live):
            idx[b, start[b]:] = torch.tensor(r.prompt)
        dtype = self.model.tok_emb.weight.dtype
        cache = KVCache.allocate(self.model.cfg, B, longest + steps, dtype=dtype, device=self.device, start=start)
        counts = self._counts(live)
        skip = self.prefix.fill(cache, [r.prompt for r in live], start) if self.prefix is not None else 0
        logits = self.model(idx[:, skip:].to(self.device), kv_cache=cache, last_only=True)[:, -1]  # (B, V)
        while live:
            next_ids, deltas = self._pick(live, logits, counts)
            yield deltas
            keep = [b for b, r in enumerate(live) if r.finish is None]
            if not keep:
                return
            if len(keep) < len(live):  # drop finished rows: the batch shrinks, decode gets cheaper
                cache.select(keep)
                live = [live[b] for b in keep]
                next_ids = next_ids[keep]
                counts = counts[keep] if counts is not None else None
            logits = self.model(next_ids[:, None].to(self.device), kv_cache=cache)[:, -1]

    def _counts(self, rows: list[Row]) -> torch.Tensor | None:
        """Output token counts (B, V), only when some row uses a penalty."""
        if not any(uses_penalties(r.params) for r in rows):
            return None
        vocab = self.model.cfg.vocab_size
        for r in rows:
            if r.params.repetition_penalty != 1.0:
                r.prompt_mask = torch.zeros(1, vocab, dtype=torch.bool)
                r.prompt_mask[0, torch.tensor(r.prompt)] = True
        return torch.zeros(len(rows), vocab, dtype=torch.long)

    def _pick(self, live: list[Row], logits: torch.Tensor, counts: torch.Tensor | None):
        logits = logits.float().cpu()
        simple = counts is None and all(r.params.greedy and r.params.logprobs is None for r in live)
        if simple:  # the common greedy case: one argmax for the whole batch
            next_ids = logits.argmax(-1)
        else:
            next_ids = torch.empty(len(live), dtype=torch.long)
            for b, r in enumerate(live):
                row_counts = counts[b:b + 1] if counts is not None else None
                processed = process_logits(logits[b:b + 1], r.params, row_counts, r.prompt_mask)
                next_ids[b] = sample(processed, r.params.greedy, r.generator)[0]
        deltas = []
        for b, r in enumerate(live):
            tok = int(next_ids[b])
            lp = self.token_logprob(logits[b], tok, r.params.logprobs) if r.params.logprobs is not None else None
            deltas.append(self.advance(r, tok, lp))
            if counts is not None:
                counts[b, tok] += 1
        return next_ids, deltas

    # ---- row-level API, continued ------------------------------------------------------------------
    @staticmethod
    def token_logprob(logits: torch.Tensor, tok: int, top_n: int) -> TokenLogprob:
        """The chosen token's logprob and the top_n alternatives, from one row's logits (V,)."""
        lp = logits.log_softmax(-1)
        top = []
        if top_n:
            vals, ids = lp.topk(top_n)
            top = [(int(i), float(v)) for i, v in zip(ids, vals)]
        return TokenLogprob(tok, float(lp[tok]), top)

    def advance(self, r: Row, tok: int, lp: TokenLogprob | None) -> Delta:
        """Append a chosen token to a row (stop ids, stop strings and max_tokens end it); the delta to show."""
        if tok in r.stop_ids:
            r.finish = "stop"
            return Delta(r.index, tok, r.stream.flush(), "stop", lp)
        r.tokens.append(tok)
        if lp is not None:
            r.logprobs.append(lp)
        text, stopped = r.stream.push(tok)
        if stopped:
            r.finish = "stop"
        elif len(r.tokens) >= r.params.max_tokens:
            r.finish = "length"
            text += r.stream.flush()
        return Delta(r.index, tok, text, r.finish, lp)


def end_of_turn_ids(tokenizer) -> set[int]:
    """EOS plus the end-of-turn specials of common chat formats present in this vocabulary."""
    ids = {tokenizer.eos_id} if tokenizer.eos_id is not None else set()
    for s in END_OF_TURN:
        i = tokenizer.special_tokens.get(s)
        if i is not None:
            ids.add(i)
    return ids

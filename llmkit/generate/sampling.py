"""Sampling as pure functions of a logits batch (B, V).

The order follows common practice (HF/vLLM): penalties on raw logits, then
temperature, then the truncation filters (top-k, top-p, min-p), then a draw.
Filters set rejected logits to -inf, so they compose in any order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from llmkit.core.errors import GenerationError

NEG_INF = float("-inf")


@dataclass
class SamplingParams:
    """Per-request decoding settings (OpenAI names where they exist)."""

    max_tokens: int = 256
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    min_p: float = 0.0  # 0 = off
    repetition_penalty: float = 1.0  # CTRL-style multiplicative, 1 = off
    presence_penalty: float = 0.0  # OpenAI: subtract once for every seen token
    frequency_penalty: float = 0.0  # OpenAI: subtract per occurrence
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: int | None = None  # return the chosen token's logprob plus this many top alternatives

    def __post_init__(self) -> None:
        checks = [
            (self.max_tokens >= 0, "max_tokens", self.max_tokens, "a non-negative integer"),
            (self.temperature >= 0, "temperature", self.temperature, ">= 0 (0 means greedy)"),
            (self.top_k >= 0, "top_k", self.top_k, ">= 0 (0 disables it)"),
            (0 < self.top_p <= 1, "top_p", self.top_p, "in (0, 1]"),
            (0 <= self.min_p <= 1, "min_p", self.min_p, "in [0, 1]"),
            (self.repetition_penalty > 0, "repetition_penalty", self.repetition_penalty, "> 0 (1 disables it)"),
            (-2 <= self.presence_penalty <= 2, "presence_penalty", self.presence_penalty, "in [-2, 2]"),
            (-2 <= self.frequency_penalty <= 2, "frequency_penalty", self.frequency_penalty, "in [-2, 2]"),
            (self.logprobs is None or 0 <= self.logprobs <= 20, "logprobs", self.logprobs, "in [0, 20]"),
        ]
        for ok, name, value, want in checks:
            if not ok:
                raise GenerationError(f"invalid {name}={value!r}", f"{name} must be {want}")
        if isinstance(self.stop, str):
            self.stop = [self.stop]

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def apply_penalties(logits: torch.Tensor, counts: torch.Tensor, repetition: float = 1.0,
                    presence: float = 0.0, frequency: float = 0.0,
                    prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Penalise tokens already generated. counts (B, V): occurrences in the output so far.

    repetition > 1 pushes seen tokens down: positive logits divided, negative multiplied.
    It also covers tokens of the prompt (prompt_mask, as HF and vLLM do); presence and
    frequency follow OpenAI and look at the output only.
    >>> apply_penalties(torch.tensor([[2.0, -2.0, 1.0]]), torch.tensor([[1, 1, 0]]), repetition=2.0)
    tensor([[ 1., -4.,  1.]])
    """
    seen = counts > 0
    out = logits
    if repetition != 1.0:
        rep_seen = seen if prompt_mask is None else seen | prompt_mask
        out = torch.where(rep_seen, torch.where(out > 0, out / repetition, out * repetition), out)
    if presence:
        out = out - presence * seen.to(out.dtype)
    if frequency:
        out = out - frequency * counts.to(out.dtype)
    return out


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return logits if temperature in (0.0, 1.0) else logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits per row (ties at the k-th value are kept)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus: keep the smallest set of top tokens whose probability reaches p (always >= 1 token)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    before = probs.cumsum(-1) - probs  # mass strictly above each token
    drop_sorted = before >= p  # the first token has before == 0 < p, so it always stays
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least min_p times the top token's."""
    if min_p <= 0.0:
        return logits
    probs = logits.softmax(-1)
    threshold = min_p * probs.max(dim=-1, keepdim=True).values
    return logits.masked_fill(probs < threshold, NEG_INF)


def uses_penalties(params: SamplingParams) -> bool:
    return params.repetition_penalty != 1.0 or bool(params.presence_penalty) or bool(params.frequency_penalty)


def process_logits(logits: torch.Tensor, params: SamplingParams, counts: torch.Tensor | None = None,
                   prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
    """All transformations for one request's rows, in the conventional order."""
    logits = logits.float()
    if counts is not None and uses_penalties(params):
        logits = apply_penalties(logits, counts, params.repetition_penalty,
                                 params.presence_penalty, params.frequency_penalty, prompt_mask)
    if params.greedy:
        return logits
    logits = apply_temperature(logits, params.temperature)
    logits = top_k_filter(logits, params.top_k)
    logits = top_p_filter(logits, params.top_p)
    return min_p_filter(logits, params.min_p)


def sample(logits: torch.Tensor, greedy: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row from processed logits (B, V) -> (B,)."""
    if greedy:
        return logits.argmax(-1)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

"""The generator RAG talks to: chat completion (streamed or not) and continuation log-likelihood.

A thin layer over llmkit.generate.engine and llmkit.eval.loglik so the retrieval and pipeline
code can be tested with any model, and the default is the packaged SmolLM2.
"""

from __future__ import annotations

from typing import Iterator

from llmkit.generate.engine import Engine
from llmkit.generate.sampling import SamplingParams


class LLM:
    def __init__(self, lm, max_context: int | None = None, repetition_penalty: float = 1.15):
        from llmkit.generate.api import chat_template_for

        self.lm = lm
        self.engine = Engine(lm.model, lm.tokenizer)
        self.template = chat_template_for(lm)
        self.max_context = max_context or lm.model.cfg.max_seq_len
        self.repetition_penalty = repetition_penalty

    def chat_ids(self, messages: list[dict]) -> list[int]:
        text = self.template.render_text(messages, add_generation_prompt=True)
        return self.lm.tokenizer.encode(text, allowed_special="all")

    def n_tokens(self, text: str) -> int:
        return len(self.lm.tokenizer.encode(text))

    def stream(self, messages: list[dict], max_tokens: int = 256, temperature: float = 0.0,
               seed: int | None = None) -> Iterator[str]:
        # a mild repetition penalty: greedy decoding of a 135M model loops on long contexts without it
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed,
                                repetition_penalty=self.repetition_penalty)
        for delta in self.engine.stream(self.chat_ids(messages), params):
            if delta.text:
                yield delta.text

    def complete(self, messages: list[dict], max_tokens: int = 256, temperature: float = 0.0,
                 seed: int | None = None) -> str:
        return "".join(self.stream(messages, max_tokens, temperature, seed)).strip()

    def loglik(self, context_messages: list[dict], continuation: str) -> float:
        """Mean log P(continuation tokens | chat context): the relevance score the re-ranker uses."""
        from llmkit.eval.loglik import score_choices

        ctx = self.chat_ids(context_messages)
        cont = self.lm.tokenizer.encode(continuation)
        scored = score_choices(self.lm.model, ctx[-(self.max_context - len(cont) - 1):], [cont])[0]
        return scored.logprob / max(1, scored.n_tokens)


def load_llm(spec: str = "smollm2", device: str = "auto") -> LLM:
    from llmkit.formats.loader import load_model

    return LLM(load_model(spec, device=device, keep_quantized="auto"))

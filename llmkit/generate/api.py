"""Typed one-shot functions behind `llmkit generate` (also usable from Python)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from llmkit.formats.loader import LoadedModel, keep_quantized_for, load_model
from llmkit.generate.beam import beam_search
from llmkit.generate.engine import Engine, end_of_turn_ids
from llmkit.generate.sampling import SamplingParams
from llmkit.tokenizer import ChatTemplate


@dataclass
class GenerateResult:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    model: str

    def to_dict(self) -> dict:
        return asdict(self)


def chat_template_for(lm: LoadedModel, override: str | None = None) -> ChatTemplate:
    """The model's own template, a built-in by name (chatml, llama3, alpaca), or ChatML as a fallback."""
    if override:
        return ChatTemplate.builtin(override)
    source = lm.tokenizer.chat_template
    return ChatTemplate(source) if source else ChatTemplate.builtin("chatml")


def prompt_ids(lm: LoadedModel, prompt: str, chat: bool = False, system: str | None = None,
               template: str | None = None) -> list[int]:
    if not chat:
        return lm.tokenizer.encode(prompt)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    text = chat_template_for(lm, template).render_text(messages, add_generation_prompt=True)
    return lm.tokenizer.encode(text, allowed_special="all")


def generate_text(prompt: str, model: str | LoadedModel = "smollm2", chat: bool = False,
                  system: str | None = None, template: str | None = None, num_beams: int = 1,
                  params: SamplingParams | None = None, device: str = "auto", dtype: str = "auto",
                  weights: str = "auto") -> GenerateResult:
    """Generate a completion (or a chat reply with chat=True) for one prompt (``weights``: auto, packed or
    float, how a quantized GGUF runs; see ``llmkit.formats.loader.packed_by_default``)."""
    lm = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype,
                                                                 keep_quantized=keep_quantized_for(weights))
    params = params or SamplingParams()
    ids = prompt_ids(lm, prompt, chat, system, template)
    if num_beams > 1:
        stop = set(params.stop_token_ids) | end_of_turn_ids(lm.tokenizer)
        best = beam_search(lm.model, ids, num_beams, params.max_tokens, sorted(stop))[0]
        text = lm.tokenizer.decode([t for t in best.token_ids if not lm.tokenizer.is_special(t)])
        finish = "stop" if best.finished else "length"
        return GenerateResult(text, finish, len(ids), len(best.token_ids), lm.name)
    out = Engine(lm.model, lm.tokenizer).generate([ids], params)[0]
    return GenerateResult(out.text, out.finish_reason, len(ids), len(out.token_ids), lm.name)

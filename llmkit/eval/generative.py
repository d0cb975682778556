"""Generative tasks: greedy decoding with stop strings through our engine, then answer matching.

Prompts are sorted by length and decoded ``batch`` at a time (the engine
left-pads them into one batch, and rows that hit a stop string leave it), so a
batch costs about as much as its longest answer. The few-shot examples every prompt starts
with are prefilled once and reused (the engine's prefix cache). A prompt longer than the
window keeps its last tokens, leaving room for the answer (as the reference
harness does).
"""

from __future__ import annotations

from typing import Callable

from llmkit.eval.gen_tasks import final_number
from llmkit.eval.metrics import exact_match, token_f1
from llmkit.eval.tasks import Item, Task


def prompt_ids(lm, item: Item, max_tokens: int, chat: bool) -> list[int]:
    text = item.contexts[0]
    if chat:
        from llmkit.generate.api import chat_template_for

        text = chat_template_for(lm).render_text([{"role": "user", "content": text.rstrip()}],
                                                 add_generation_prompt=True)
    ids = lm.tokenizer.encode(text, allowed_special="all")
    keep = lm.model.cfg.max_seq_len - max_tokens
    return ids[-keep:] if len(ids) > keep else ids


def generate_answers(lm, items: list[Item], max_tokens: int, chat: bool = False,
                     on_answer: Callable[[int, str], None] | None = None, batch: int = 8) -> list[str]:
    """Greedy continuation of every item's prompt until one of its stop strings (or max_tokens)."""
    from llmkit.generate.engine import Engine
    from llmkit.generate.sampling import SamplingParams

    engine = Engine(lm.model, lm.tokenizer, prefix_cache=True)  # few-shot examples: one prefill
    prompts = [prompt_ids(lm, it, max_tokens, chat) for it in items]
    order = sorted(range(len(items)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(items)
    for lo in range(0, len(order), batch):
        chunk = order[lo:lo + batch]
        params = [SamplingParams(max_tokens=max_tokens, temperature=0.0, top_p=1.0, stop=list(items[i].stop))
                  for i in chunk]
        for i, done in zip(chunk, engine.generate([prompts[i] for i in chunk], params)):
            out[i] = done.text
            if on_answer is not None:
                on_answer(i, done.text)
    return out


def answer_metrics(task: Task, item: Item, text: str) -> dict[str, float]:
    """Per-item scores of one generated answer against the accepted answers."""
    answers = list(item.answers)
    if task.normalize == "number":
        got = final_number(text)
        return {"exact_match": float(got is not None and got in {final_number(a) for a in answers})}
    pred = text.strip()
    scores = {"exact_match": exact_match(pred, answers), "f1": token_f1(pred, answers)}
    return {k: v for k, v in scores.items() if k in task.metrics}

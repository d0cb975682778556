"""Helpers shared by the bench scripts."""

from __future__ import annotations

import time
from typing import Callable


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of `repeats` wall-clock timings: the least disturbed by a noisy machine."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def hf_chat_runner(prompts: list[str], cache: dict):
    """transformers `generate` on the packaged SmolLM2 GGUF in fp32, greedy, exactly n new tokens per row.

    Returns (run, enc): ``run(n)`` generates for the chat-templated, left-padded ``prompts``;
    the model loads once into ``cache`` (``cache["load"]`` is its load time in seconds).
    """
    import torch
    import transformers

    from llmkit.core.assets import asset_path

    if "model" not in cache:
        path = asset_path("smollm2")
        t = time.perf_counter()
        cache["tok"] = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        cache["model"] = transformers.AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32).eval()
        cache["load"] = time.perf_counter() - t
    model, tok = cache["model"], cache["tok"]
    tok.padding_side = "left"
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in prompts]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)

    def run(n):
        with torch.inference_mode():
            return model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                  pad_token_id=tok.pad_token_id)

    return run, enc

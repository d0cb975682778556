"""Decode speed of llmkit's engine vs transformers `generate`, same model, prompts and length, one run.

    python bench/generate.py [--tokens 128] [--repeats 2] [--batches 1,8]

Both run SmolLM2-135M-Instruct in fp32 from the packaged GGUF (transformers via
`gguf_file=`), greedy, with EOS ignored so every row makes exactly --tokens
tokens. Decode tok/s = rows × (tokens − 1) / (time for N tokens − time for 1
token), so prompt prefill is excluded for both sides. Also reports the time to
the first token of a fresh `llmkit generate` process with a warm cache.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch
from common import best_time, hf_chat_runner  # bench/common.py (scripts run from bench/ or the repo root)

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain what a transformer model is in two sentences.",
    "List three prime numbers.",
    "How do I reverse a list in Python?",
    "Why is the sky blue?",
    "Translate 'good morning' into Spanish.",
    "Give me a tip for learning to cook.",
]




def llmkit_side(batch: int, tokens: int, repeats: int):
    from llmkit.formats.loader import load_model
    from llmkit.generate import Engine, SamplingParams
    from llmkit.generate.api import prompt_ids

    lm = load_model("smollm2", device="cpu", dtype="float32")
    engine = Engine(lm.model, lm.tokenizer)
    prompts = [prompt_ids(lm, p, chat=True) for p in PROMPTS[:batch]]

    def run(n):
        return engine.generate(prompts, SamplingParams(max_tokens=n, temperature=0, ignore_eos=True))

    run(4)  # warm-up
    t1, tn = best_time(lambda: run(1), repeats), best_time(lambda: run(tokens), repeats)
    return batch * (tokens - 1) / (tn - t1), run(tokens)[0].token_ids


def hf_side(batch: int, tokens: int, repeats: int, cache: dict):
    run, enc = hf_chat_runner(PROMPTS[:batch], cache)
    run(4)
    t1, tn = best_time(lambda: run(1), repeats), best_time(lambda: run(tokens), repeats)
    out = run(tokens)[0, enc["input_ids"].shape[1]:].tolist()
    return batch * (tokens - 1) / (tn - t1), out


def time_to_first_token() -> float:
    """Wall time of a fresh process: start, load the cached checkpoint, emit one token."""
    cmd = [sys.executable, "-m", "llmkit", "generate", "--chat", "--temperature", "0", "--max-tokens", "1", "Hi"]
    subprocess.run(cmd, check=True, capture_output=True)  # make sure the cache exists
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batches", default="1,8")
    a = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    ttft = time_to_first_token()
    print(f"llmkit time to first token, fresh process, warm cache: {ttft:.2f} s")
    cache: dict = {}
    rows = []
    for b in [int(x) for x in a.batches.split(",")]:
        ours, our_ids = llmkit_side(b, a.tokens, a.repeats)
        theirs, their_ids = hf_side(b, a.tokens, a.repeats, cache)
        # transformers' min_new_tokens bans end-of-turn, so compare up to our first end-of-turn token
        cut = next((i for i, t in enumerate(our_ids) if t in (1, 2)), len(our_ids))
        same = our_ids[:cut] == their_ids[:cut]
        rows.append((b, ours, theirs, same))
        print(f"batch {b}: llmkit {ours:.1f} tok/s, transformers {theirs:.1f} tok/s, ratio {ours / theirs:.2f}x,"
              f" greedy row 0 identical up to end-of-turn: {same}", flush=True)
    print(f"transformers load time (GGUF dequantize): {cache['load']:.1f} s")
    print("\n| batch | llmkit tok/s | transformers tok/s | ratio |\n|---|---|---|---|")
    for b, ours, theirs, _ in rows:
        print(f"| {b} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}x |")


if __name__ == "__main__":
    main()

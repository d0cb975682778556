"""Speculative decoding vs plain greedy decoding on SmolLM2-135M-Instruct, same prompts, one run.

    python bench/speculative.py [--tokens 64] [--k 4] [--draft-layers 8]

Three prompts where the answer copies from the prompt (code edit, extraction,
repetition: prompt lookup's home ground) and one free-form chat prompt. For each:
plain greedy (our Engine, batch 1), prompt-lookup speculation, and a layer-skip
self-draft (the first --draft-layers blocks of the same model). Every run's
tokens are checked identical to plain greedy; tok/s and acceptance are printed.

A second table runs the same prompts through the server's scheduler (what
`llmkit serve` runs), with --speculative 0 against --speculative K: one request at
a time, prompt lookup with its back-off after misses.
"""

from __future__ import annotations

import argparse
import time

PROMPTS = {
    "code edit": ("Rename the function add to plus and return the code.\n\n"
                  "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n    result = a + b\n    return result\n\n"
                  "print(add(1, 2))\nprint(add(3, 4))\n"),
    "extraction": ("Text: The meeting with Alice Johnson, Bob Smith and Carol White is on Monday at the "
                   "Grand Hotel in Paris. Alice Johnson will present.\nList every person named in the text."),
    "repeat": "Repeat this sentence three times: The quick brown fox jumps over the lazy dog.",
    "chat": "Why is the sky blue? Answer in two sentences.",
}


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--draft-layers", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    a = ap.parse_args()
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)  # an oversubscribed machine punishes multi-threaded tiny ops

    from llmkit.formats.loader import load_model
    from llmkit.generate import Engine, SamplingParams
    from llmkit.generate.api import prompt_ids
    from llmkit.generate.speculative import layer_skip_draft, speculative_greedy

    lm = load_model("smollm2", device="cpu", dtype="float32")
    engine = Engine(lm.model, lm.tokenizer)
    stops = sorted(engine.default_stop_ids)
    draft = layer_skip_draft(lm.model, a.draft_layers)
    engine.generate([prompt_ids(lm, "Hi", chat=True)], SamplingParams(max_tokens=4, temperature=0))  # warm-up
    print(f"| prompt | plain tok/s | prompt lookup tok/s (accept) | layer-skip {a.draft_layers}/"
          f"{lm.model.cfg.n_layer} draft tok/s (accept) | identical |")
    print("|---|---|---|---|---|")
    for name, text in PROMPTS.items():
        ids = prompt_ids(lm, text, chat=True)
        base, t0 = timed(lambda: engine.generate([ids], SamplingParams(max_tokens=a.tokens, temperature=0))[0])
        look, t1 = timed(lambda: speculative_greedy(lm.model, ids, a.tokens, stops, k=a.k))
        skip, t2 = timed(lambda: speculative_greedy(lm.model, ids, a.tokens, stops, draft=draft, k=a.k))
        n = len(base.token_ids)
        same = look.token_ids == base.token_ids and skip.token_ids == base.token_ids
        print(f"| {name} | {n / t0:.1f} | {len(look.token_ids) / t1:.1f} ({look.acceptance:.0%}) "
              f"= {t0 / t1:.2f}x | {len(skip.token_ids) / t2:.1f} ({skip.acceptance:.0%}) = {t0 / t2:.2f}x "
              f"| {'yes' if same else 'NO'} |")
    scheduler_table(lm, engine, a.tokens, a.k)


def scheduler_table(lm, engine, tokens: int, k: int) -> None:
    from llmkit.generate import SamplingParams
    from llmkit.generate.api import prompt_ids
    from llmkit.generate.scheduler import Scheduler

    def run(spec: int, ids):
        sched = Scheduler(engine, speculative=spec)  # stepped on this thread, as `llmkit serve` runs it

        def go():
            req = sched.submit(ids, SamplingParams(max_tokens=tokens, temperature=0))
            while not req.finished:
                sched.step()
            return req.result()[0]

        out, t = timed(go)
        return out, t, sched.stats

    print(f"\n| prompt (server scheduler) | --speculative 0 tok/s | --speculative {k} tok/s | accepted/proposed "
          f"| forwards | identical |")
    print("|---|---|---|---|---|---|")
    for name, text in PROMPTS.items():
        ids = prompt_ids(lm, text, chat=True)
        base, t0, _ = run(0, ids)
        spec, t1, st = run(k, ids)
        n = len(base.token_ids)
        print(f"| {name} | {n / t0:.1f} | {len(spec.token_ids) / t1:.1f} = **{t0 / t1:.2f}x** "
              f"| {st.spec_accepted}/{st.spec_proposed} | {st.steps + 1} for {len(spec.token_ids)} tokens "
              f"| {'yes' if spec.token_ids == base.token_ids else 'NO'} |")


if __name__ == "__main__":
    main()

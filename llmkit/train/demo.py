"""`llmkit finetune demo`: teach SmolLM2-135M-Instruct 3-digit addition with a strict answer format.

    base ─ LoRA-SFT ─► DPO ─► GRPO        held-out accuracy after each stage, a table and a PNG

The skill: "What is 347 + 589? Reply with only the number." is right only when
the reply is exactly "936" — checked by ``rewards.exact_answer``. The base
model answers in sentences or gets the sum wrong, so it starts near 0%.

- SFT: LoRA on generated problems with their gold answers.
- DPO: preference pairs built from the SFT model's own samples: several samples
  per training problem; on the problems where some sample is wrong, the gold
  answer (chosen) vs the most common wrong reply (rejected); the reference is
  the SFT model (adapters off).
- GRPO: groups of sampled replies scored by the exact-answer reward, with
  dynamic sampling (groups that all agree are replaced by fresh prompts).

Each stage starts from the previous stage's merged model. Held-out problems
never appear in training data.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from llmkit.core.fileio import atomic_write_file
from llmkit.core.stats import mean_stderr
from llmkit.train.ft_config import FinetuneConfig

QUESTION = "What is {a} + {b}? Reply with only the number."


@dataclass
class DemoSizes:
    train: int = 2000  # generated training problems
    eval: int = 200  # held-out problems: the standard error at 75% is 3 points
    sft_steps: int = 80
    dpo_pairs: int = 512  # training problems sampled for DPO pairs (only the ones the model gets wrong make a pair)
    dpo_samples: int = 4  # samples per problem
    dpo_steps: int = 64
    grpo_steps: int = 40
    grpo_lr: float = 1e-4
    grpo_draws: int = 8  # dynamic sampling: extra prompts a GRPO step may draw; 0 = off
    batch: int = 8
    group: int = 8


QUICK = DemoSizes(train=64, eval=8, sft_steps=3, dpo_pairs=8, dpo_samples=2, dpo_steps=2, grpo_steps=2, grpo_draws=2,
                  batch=4, group=2)


@dataclass
class DemoReport:
    rows: list[dict] = field(default_factory=list)  # {"stage", "accuracy", "seconds", "n"}
    table: str = ""
    markdown_path: Path | None = None
    png_path: Path | None = None


def problems(n: int, rng: random.Random, exclude: set[tuple[int, int]] = frozenset()) -> list[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    while len(out) < n:
        p = (rng.randint(100, 999), rng.randint(100, 999))
        if p not in exclude:
            out.add(p)
    return sorted(out, key=lambda p: rng.random())


def _jsonl(path: Path, records: list[dict]) -> Path:
    atomic_write_file(path, "".join(json.dumps(r) + "\n" for r in records))
    return path


def _prompts(lm, pairs):
    from llmkit.data.chat_data import template_for

    template = template_for(lm.tokenizer)
    return [(template.render(lm.tokenizer, [{"role": "user", "content": QUESTION.format(a=a, b=b)}],
                             add_generation_prompt=True)[0], {"answer": str(a + b)}) for a, b in pairs]


def accuracy(model_spec: str, pairs) -> tuple[float, list[str]]:
    from llmkit.formats.loader import load_model
    from llmkit.train.grpo import greedy_accuracy
    from llmkit.train.rewards import exact_answer

    lm = load_model(model_spec, device="cpu", dtype="float32")
    return greedy_accuracy(lm.model, lm.tokenizer, _prompts(lm, pairs), [exact_answer], max_new_tokens=6)


def rejected_reply(replies: list[str], gold: str) -> str | None:
    """The most common wrong (non-empty) reply, the first seen on a tie; None if every reply is right.

    rejected_reply(["936", "926", "1036", "926"], "936") == "926"
    """
    wrong = Counter(r.strip() for r in replies if r.strip() and r.strip() != gold)
    return wrong.most_common(1)[0][0] if wrong else None  # most_common keeps first-seen order on ties


def preference_pairs(model_spec: str, pairs, samples: int, seed: int) -> list[dict]:
    """`samples` replies (temperature 1) per training problem; a pair (gold, most common wrong reply) per
    problem the model is unsure of. Problems it always gets right make no pair: nothing to prefer there."""
    from llmkit.formats.loader import load_model
    from llmkit.generate import Engine, SamplingParams

    lm = load_model(model_spec, device="cpu", dtype="float32")
    flat = [p for p, _ in _prompts(lm, pairs) for _ in range(samples)]
    engine = Engine(lm.model, lm.tokenizer)
    texts = []
    for i in range(0, len(flat), 32):
        params = [SamplingParams(max_tokens=6, temperature=1.0, top_p=1.0, seed=seed + i + j)
                  for j in range(len(flat[i:i + 32]))]
        texts += [c.text for c in engine.generate(flat[i:i + 32], params)]
    out = []
    for k, (a, b) in enumerate(pairs):
        rejected = rejected_reply(texts[k * samples:(k + 1) * samples], str(a + b))
        if rejected is not None:
            out.append({"prompt": QUESTION.format(a=a, b=b), "chosen": str(a + b), "rejected": rejected})
    return out


def _stage_cfg(sizes: DemoSizes, out: Path, stage: str, **kw) -> FinetuneConfig:
    base = dict(out_dir=str(out / stage), adapter="lora", lora_r=16, lora_alpha=32, lora_targets=("all-linear",),
                batch_size=sizes.batch, max_len=96, warmup=2, eval_every=10**6, ckpt_every=10**6, log_every=1,
                resume=False, progress=True, device="cpu")
    base.update(kw)
    return FinetuneConfig(**base)


def sft_stage(sizes: DemoSizes, out: Path, base: str, train, seed: int) -> str:
    from llmkit.train.finetune import finetune

    sft = [{"messages": [{"role": "user", "content": QUESTION.format(a=a, b=b)},
                         {"role": "assistant", "content": str(a + b)}]} for a, b in train]
    finetune(_stage_cfg(sizes, out, "sft", method="sft", init_from=base, data=str(_jsonl(out / "sft.jsonl", sft)),
                        max_steps=sizes.sft_steps, lr=1e-3, seed=seed))
    return str(out / "sft" / "final")


def dpo_stage(sizes: DemoSizes, out: Path, init: str, train, seed: int) -> str:
    from llmkit.data.errors import DataError
    from llmkit.train.finetune import finetune

    pairs = preference_pairs(init, train[:sizes.dpo_pairs], sizes.dpo_samples, seed)
    if not pairs:
        raise DataError(f"the model got all {sizes.dpo_pairs} DPO problems right in every sample",
                        "raise dpo_pairs or dpo_samples")
    print(f"DPO: {len(pairs)} pairs from {sizes.dpo_pairs} problems x {sizes.dpo_samples} samples")
    finetune(_stage_cfg(sizes, out, "dpo", method="dpo", init_from=init,
                        data=str(_jsonl(out / "pairs.jsonl", pairs)), max_steps=sizes.dpo_steps, lr=2e-4,
                        beta=0.1, rpo_alpha=1.0, batch_size=max(sizes.batch // 2, 2), seed=seed))
    return str(out / "dpo" / "final")


def grpo_stage(sizes: DemoSizes, out: Path, init: str, train, seed: int) -> str:
    from llmkit.train.finetune import finetune

    prompts = [{"prompt": QUESTION.format(a=a, b=b), "answer": str(a + b)} for a, b in train[sizes.dpo_pairs:]]
    finetune(_stage_cfg(sizes, out, "grpo", method="grpo", init_from=init,
                        data=str(_jsonl(out / "prompts.jsonl", prompts)), max_steps=sizes.grpo_steps,
                        lr=sizes.grpo_lr, group_size=sizes.group, max_new_tokens=6, temperature=1.0, kl_beta=0.04,
                        rewards=("exact",), batch_size=max(sizes.batch // 4, 1), seed=seed,
                        dynamic_sampling=sizes.grpo_draws > 0, dynamic_sampling_draws=max(sizes.grpo_draws, 1)))
    return str(out / "grpo" / "final")


def run_demo(out: str | Path = "runs/finetune-demo", quick: bool = False, seed: int = 0, base: str = "smollm2",
             sizes: DemoSizes | None = None) -> DemoReport:
    sizes = sizes or (QUICK if quick else DemoSizes())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    held = problems(sizes.eval, rng)
    train = problems(sizes.train, rng, exclude=set(held))
    report = DemoReport()
    from llmkit.train.rewards import exact_answer

    def measure(stage: str, spec: str, t0: float) -> None:
        acc, texts = accuracy(spec, held)
        correct = [exact_answer(t, {"answer": str(a + b)}) == 1.0 for t, (a, b) in zip(texts, held)]
        prev = report.rows[-1]["correct"] if report.rows else correct
        report.rows.append({"stage": stage, "accuracy": acc, "stderr": stderr(acc, len(held)),
                            "change": acc - sum(prev) / len(prev), "change_stderr": paired_stderr(prev, correct),
                            "seconds": time.perf_counter() - t0, "n": len(held), "model": spec,
                            "samples": texts[:5], "correct": correct})
        print(f"{stage}: held-out accuracy {acc:.1%} ± {stderr(acc, len(held)):.1%} ({len(held)} problems)")

    spec = base
    for stage, run in (("base", None), ("LoRA-SFT", sft_stage), ("DPO", dpo_stage), ("GRPO", grpo_stage)):
        t0 = time.perf_counter()
        spec = run(sizes, out, spec, train, seed) if run else spec
        measure(stage, spec, t0)
    return _write_report(report, out, sizes, quick)


def stderr(p: float, n: int) -> float:
    """Standard error of an accuracy p measured on n independent problems: sqrt(p(1-p)/n)."""
    return math.sqrt(p * (1 - p) / n) if n else 0.0


def paired_stderr(before: list[bool], after: list[bool]) -> float:
    """Standard error of the accuracy change on the same problems: std(after_i - before_i) / sqrt(n).

    Tighter than two independent errors: problems both stages get right (or wrong) add no noise.
    paired_stderr([1, 1, 0, 0], [1, 0, 1, 1]) == sqrt(11/12) / 2
    """
    d = [float(int(a) - int(b)) for a, b in zip(after, before)]
    return mean_stderr(d) if len(d) >= 2 else 0.0


def _write_report(report: DemoReport, out: Path, sizes: DemoSizes, quick: bool) -> DemoReport:
    lines = ["| stage | held-out accuracy ± s.e. | change vs previous stage ± paired s.e. | stage time (s) |",
             "|---|---|---|---|"]
    lines += [f"| {r['stage']} | {r['accuracy']:.1%} ± {r['stderr']:.1%} ({round(r['accuracy'] * r['n'])}/{r['n']}) | "
              f"{_change(r) if i else '—'} | {r['seconds']:.0f} |" for i, r in enumerate(report.rows)]
    report.table = "\n".join(lines)
    md = [f"# Fine-tuning demo{' (quick)' if quick else ''}: 3-digit addition, strict format", "",
          f"Task: `{QUESTION}` — right only if the reply is exactly the sum.", "",
          f"Sizes: {json.dumps(sizes.__dict__)}", "", report.table, "", "Sample replies per stage:", ""]
    for r in report.rows:
        md.append(f"- {r['stage']}: " + ", ".join(repr(s) for s in r["samples"]))
    atomic_write_file(out / "report.md", "\n".join(md) + "\n")
    report.markdown_path = out / "report.md"
    atomic_write_file(out / "results.json", json.dumps(report.rows, indent=2) + "\n")
    report.png_path = _plot(report.rows, out / "accuracy.png")
    return report


def _change(row: dict) -> str:
    return f"{100 * row['change']:+.1f} ± {100 * row['change_stderr']:.1f} points"


def _plot(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    names, accs = [r["stage"] for r in rows], [100 * r["accuracy"] for r in rows]
    errs = [100 * r["stderr"] for r in rows]
    bars = ax.bar(names, accs, yerr=errs, capsize=4, color=["#999", "#4a90d9", "#e8a33d", "#5cb85c"][:len(rows)])
    for b, v, e in zip(bars, accs, errs):
        ax.text(b.get_x() + b.get_width() / 2, v + e + 1, f"{v:.1f}%", ha="center")
    ax.set_ylabel(f"held-out accuracy (%), n = {rows[0]['n']}")
    ax.set_ylim(0, 105)
    ax.set_title("SmolLM2-135M-Instruct: 3-digit addition, exact answer")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path



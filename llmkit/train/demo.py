"""`llmkit finetune demo`: teach SmolLM2-135M-Instruct 3-digit addition with a strict answer format.

    base ─ LoRA-SFT ─► DPO ─► GRPO        held-out accuracy after each stage, a table and a PNG

The skill: "What is 347 + 589? Reply with only the number." is right only when
the reply is exactly "936" — checked by ``rewards.exact_answer``. The base
model answers in sentences or gets the sum wrong, so it starts near 0%.

- SFT: LoRA on generated problems with their gold answers.
- DPO: preference pairs built from the SFT model's own samples on training
  problems: gold answer (chosen) vs a wrong sampled reply (rejected); the
  reference is the SFT model (adapters off).
- GRPO: groups of sampled replies scored by the exact-answer reward.

Each stage starts from the previous stage's merged model. Held-out problems
never appear in training data.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from llmkit.core.fileio import atomic_write_file
from llmkit.train.ft_config import FinetuneConfig

QUESTION = "What is {a} + {b}? Reply with only the number."


@dataclass
class DemoSizes:
    train: int = 2000  # generated training problems
    eval: int = 50  # held-out problems
    sft_steps: int = 80
    dpo_pairs: int = 512
    dpo_steps: int = 64
    grpo_steps: int = 40
    batch: int = 8
    group: int = 8


QUICK = DemoSizes(train=64, eval=8, sft_steps=3, dpo_pairs=8, dpo_steps=2, grpo_steps=2, batch=4, group=2)


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


def preference_pairs(model_spec: str, pairs, seed: int) -> list[dict]:
    """Gold answer vs the model's own wrong sample (temperature 1) for each training problem it gets wrong."""
    from llmkit.formats.loader import load_model
    from llmkit.generate import Engine, SamplingParams

    lm = load_model(model_spec, device="cpu", dtype="float32")
    prompts = _prompts(lm, pairs)
    engine = Engine(lm.model, lm.tokenizer)
    out = []
    for i in range(0, len(prompts), 16):
        chunk = prompts[i:i + 16]
        params = [SamplingParams(max_tokens=6, temperature=1.0, top_p=1.0, seed=seed + i + j) for j in range(len(chunk))]
        for (a, b), c in zip(pairs[i:i + 16], engine.generate([p for p, _ in chunk], params)):
            wrong = c.text.strip() != str(a + b)
            rejected = c.text.strip() if wrong and c.text.strip() else str(a + b + random.Random(a * b).choice(
                [-100, -10, -1, 1, 10, 100]))  # a near-miss when the model was right
            out.append({"prompt": QUESTION.format(a=a, b=b), "chosen": str(a + b), "rejected": rejected})
    return out


def _stage_cfg(sizes: DemoSizes, out: Path, stage: str, **kw) -> FinetuneConfig:
    base = dict(out_dir=str(out / stage), adapter="lora", lora_r=16, lora_alpha=32, lora_targets=("all-linear",),
                batch_size=sizes.batch, max_len=96, warmup=2, eval_every=10**6, ckpt_every=10**6, log_every=1,
                resume=False, progress=True, device="cpu")
    base.update(kw)
    return FinetuneConfig(**base)


def run_demo(out: str | Path = "runs/finetune-demo", quick: bool = False, seed: int = 0, base: str = "smollm2",
             sizes: DemoSizes | None = None) -> DemoReport:
    from llmkit.train.finetune import finetune

    sizes = sizes or (QUICK if quick else DemoSizes())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    held = problems(sizes.eval, rng)
    train = problems(sizes.train, rng, exclude=set(held))
    report = DemoReport()

    def measure(stage: str, spec: str, t0: float) -> None:
        acc, texts = accuracy(spec, held)
        report.rows.append({"stage": stage, "accuracy": acc, "seconds": time.perf_counter() - t0, "n": len(held),
                            "model": spec, "samples": texts[:5]})
        print(f"{stage}: held-out accuracy {acc:.1%} ({len(held)} problems)")

    t0 = time.perf_counter()
    measure("base", base, t0)
    sft = [{"messages": [{"role": "user", "content": QUESTION.format(a=a, b=b)},
                         {"role": "assistant", "content": str(a + b)}]} for a, b in train]
    t0 = time.perf_counter()
    finetune(_stage_cfg(sizes, out, "sft", method="sft", init_from=base, data=str(_jsonl(out / "sft.jsonl", sft)),
                        max_steps=sizes.sft_steps, lr=1e-3, seed=seed))
    measure("LoRA-SFT", str(out / "sft" / "final"), t0)
    t0 = time.perf_counter()
    pairs = preference_pairs(str(out / "sft" / "final"), train[:sizes.dpo_pairs], seed)
    finetune(_stage_cfg(sizes, out, "dpo", method="dpo", init_from=str(out / "sft" / "final"),
                        data=str(_jsonl(out / "pairs.jsonl", pairs)), max_steps=sizes.dpo_steps, lr=2e-4,
                        beta=0.1, rpo_alpha=1.0, batch_size=max(sizes.batch // 2, 2), seed=seed))
    measure("DPO", str(out / "dpo" / "final"), t0)
    t0 = time.perf_counter()
    prompts = [{"prompt": QUESTION.format(a=a, b=b), "answer": str(a + b)} for a, b in train[sizes.dpo_pairs:]]
    finetune(_stage_cfg(sizes, out, "grpo", method="grpo", init_from=str(out / "dpo" / "final"),
                        data=str(_jsonl(out / "prompts.jsonl", prompts)), max_steps=sizes.grpo_steps, lr=1e-4,
                        group_size=sizes.group, max_new_tokens=6, temperature=1.0, kl_beta=0.04,
                        rewards=("exact",), batch_size=max(sizes.batch // 4, 1), seed=seed))
    measure("GRPO", str(out / "grpo" / "final"), t0)
    return _write_report(report, out, sizes, quick)


def _write_report(report: DemoReport, out: Path, sizes: DemoSizes, quick: bool) -> DemoReport:
    lines = ["| stage | held-out accuracy | stage time (s) |", "|---|---|---|"]
    lines += [f"| {r['stage']} | {r['accuracy']:.1%} ({round(r['accuracy'] * r['n'])}/{r['n']}) | "
              f"{r['seconds']:.0f} |" for r in report.rows]
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


def _plot(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    names, accs = [r["stage"] for r in rows], [100 * r["accuracy"] for r in rows]
    bars = ax.bar(names, accs, color=["#999", "#4a90d9", "#e8a33d", "#5cb85c"][:len(rows)])
    for b, v in zip(bars, accs):
        ax.text(b.get_x() + b.get_width() / 2, v + 1, f"{v:.0f}%", ha="center")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title("SmolLM2-135M-Instruct: 3-digit addition, exact answer")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path



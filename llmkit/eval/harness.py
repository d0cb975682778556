"""Run tasks on a model and collect metrics: `llmkit eval` as a typed function.

Multiple choice: every choice's continuation is scored by log-likelihood (see
loglik.py); `acc` picks the highest total log-probability, `acc_norm` the highest
log-probability per character of the choice (the reference harness's
normalisation, which removes the bias toward short answers). Every metric comes
with its standard error over items. Results are written only when a run ends,
atomically, so an interrupted run never leaves a file that looks complete.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llmkit.core.errors import ConfigError
from llmkit.eval.batch_scorer import BatchScorer
from llmkit.eval.loglik import Scored, split_pair
from llmkit.eval.metrics import acc_norm_choice, argmax, mean_stderr
from llmkit.eval.perplexity import SPEC as PPL_SPEC, perplexity
from llmkit.eval.tasks import Item, Task, load_task


@dataclass
class TaskResult:
    task: str
    n: int
    shots: int
    metrics: dict[str, float]
    stderr: dict[str, float]
    seconds: float
    notes: list[str] = field(default_factory=list)
    subtasks: dict[str, dict[str, float]] = field(default_factory=dict)
    samples: list[dict] = field(default_factory=list, repr=False)  # per item: what was asked, what came out

    def summary(self) -> dict:
        """Everything but the per-item samples (those go to samples/<task>.jsonl with --samples)."""
        d = asdict(self)
        d.pop("samples")
        return d


def _chat_context(lm, context: str) -> str:
    from llmkit.generate.api import chat_template_for

    return chat_template_for(lm).render_text([{"role": "user", "content": context.rstrip()}],
                                             add_generation_prompt=True)


def item_requests(lm, item: Item, chat: bool = False) -> list[tuple[list[int], list[int]]]:
    """Token ids of (context, continuation) for every choice of one item."""
    reqs = item.requests()
    if chat:
        reqs = [(_chat_context(lm, c), x.lstrip()) for c, x in reqs]
    return [split_pair(lm.tokenizer, c, x) for c, x in reqs]


def score_items(lm, items: list[Item], chat: bool = False, on_item=None, batch: int = 16) -> list[list[Scored]]:
    """Scored choices of every item, batched across items (see batch_scorer.py).

    ``on_item(i, scores)`` is called as each item completes (items finish out of order).
    """
    groups = [item_requests(lm, it, chat) for it in items]
    return BatchScorer(lm.model, batch=batch).score(groups, on_item)


def score_item(lm, item: Item, chat: bool = False) -> list[float]:
    """Log-likelihood of each choice of one item."""
    return [s.logprob for s in score_items(lm, [item], chat)[0]]


def _expand(task: Task) -> list[Task]:
    return [load_task(s) for s in task.subtasks] if task.subtasks else [task]


def _collect(task: Task, shots: int, seed: int, limit: int | None) -> tuple[list[Item], list[str]]:
    notes: list[str] = []
    items: list[Item] = []
    for sub in _expand(task):  # --limit applies per subject for aggregates such as mmlu
        sub_items = sub.items(shots=shots, seed=seed, limit=limit)
        total = len(sub.docs())
        if limit is not None and limit > total:
            notes.append(f"{sub.name}: --limit {limit} is more than its {total} items; using all {total}")
        items.extend(sub_items)
    if task.kind == "generate" and task.fewshot_pool is not None and shots > len(task.fewshot_pool()):
        notes.append(f"{task.name}: --shots {shots} is more than its {len(task.fewshot_pool())} fixed examples; "
                     f"using {len(task.fewshot_pool())}")
    return items, notes


def _mc_metrics(item: Item, scored: list[Scored]) -> dict[str, float]:
    lls = [s.logprob for s in scored]
    return {"acc": float(argmax(lls) == item.gold),
            "acc_norm": float(acc_norm_choice(lls, list(item.choices)) == item.gold)}


def evaluate_task(lm, name: str, shots: int = 0, limit: int | None = None, seed: int = 1234,
                  chat: bool = False, progress: bool = True, batch_size: int = 16) -> TaskResult:
    """Score one task (or ``ppl:PATH``) on a loaded model."""
    t0 = time.perf_counter()
    if name.startswith(PPL_SPEC):
        res = perplexity(lm, name, max_tokens=limit, progress=progress)
        return TaskResult(name, res["tokens"], 0, {k: res[k] for k in ("perplexity", "bits_per_byte")},
                          {}, time.perf_counter() - t0)
    task = load_task(name)
    items, notes = _collect(task, shots, seed, limit)
    bar = _bar(progress, len(items), name)
    per_item: list[dict[str, float] | None] = [None] * len(items)
    samples: list[dict | None] = [None] * len(items)
    extra: dict[str, float] = {}

    def done(i: int, metrics: dict[str, float], **record) -> None:
        per_item[i] = metrics
        samples[i] = {"task": items[i].task, "index": items[i].index, **record, "metrics": metrics}
        if bar is not None:
            bar.update(1)
            key = task.metrics[0]
            seen = [m[key] for m in per_item if m is not None]
            bar.set_postfix({key: f"{sum(seen) / len(seen):.3f}"})

    if task.kind == "generate":
        from llmkit.eval.generative import answer_metrics, generate_answers

        def on_answer(i: int, text: str) -> None:
            done(i, answer_metrics(task, items[i], text), output=text, answers=list(items[i].answers))

        generate_answers(lm, items, task.max_tokens, chat, on_answer, batch=max(1, batch_size // 2))
    else:
        def on_item(i: int, sc: list[Scored]) -> None:
            metrics = _mc_metrics(items[i], sc) if task.kind == "mc" else {"acc": float(sc[0].greedy)}
            done(i, metrics, logliks=[s.logprob for s in sc], gold=items[i].gold)

        scored = score_items(lm, items, chat, on_item, batch=batch_size)
        if task.kind == "loglik":  # corpus perplexity of the continuations (lm-eval's lambada ppl)
            nll, n = -sum(sc[0].logprob for sc in scored), max(len(scored), 1)
            extra["perplexity"] = math.exp(nll / n)
    if bar is not None:
        bar.close()
    metrics, stderr = _aggregate(task, per_item)
    metrics.update(extra)
    subtasks = {}
    if task.subtasks:
        by_sub: dict[str, list[float]] = {}
        for it, m in zip(items, per_item):
            by_sub.setdefault(it.task, []).append(m["acc"])
        subtasks = {k: {"acc": sum(v) / len(v), "n": len(v)} for k, v in by_sub.items()}
    return TaskResult(name, len(items), shots, metrics, stderr, time.perf_counter() - t0, notes, subtasks,
                      samples)  # type: ignore[arg-type]


def _aggregate(task: Task, per_item: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and standard error of every per-item metric."""
    keys = list(per_item[0]) if per_item else [m for m in task.metrics if m != "perplexity"]
    metrics = {k: sum(m[k] for m in per_item) / max(len(per_item), 1) for k in keys}
    stderr = {k: mean_stderr([m[k] for m in per_item]) for k in keys}
    return metrics, stderr


def _bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="item", dynamic_ncols=True)


def evaluate(model: str, tasks: list[str], shots: int = 0, limit: int | None = None, seed: int = 1234,
             chat: bool = False, out_dir: str | None = None, device: str = "auto",
             progress: bool = True, batch_size: int = 16, write_samples: bool = False) -> dict:
    """Score one model on several tasks; writes results.json + results.md into out_dir if given.

    With ``write_samples``, out_dir also gets samples/<task>.jsonl: every item's
    log-likelihoods or generated text next to its metrics.
    """
    from llmkit.formats.loader import load_model

    if not tasks:
        raise ConfigError("no tasks given", "pass e.g. --tasks arc_easy,hellaswag")
    if limit is not None and limit <= 0:
        raise ConfigError(f"--limit must be positive (got {limit})", "omit it to use every item")
    if batch_size <= 0:
        raise ConfigError(f"--batch-size must be positive (got {batch_size})", "use e.g. 16")
    if shots < 0:
        raise ConfigError(f"--shots must be >= 0 (got {shots})", "use 0 for zero-shot")
    for t in tasks:  # fail on an unknown task or a missing file before loading the model
        if t.startswith(PPL_SPEC) and not Path(t[len(PPL_SPEC):]).exists():
            raise ConfigError(f"perplexity input {t[len(PPL_SPEC):]!r} does not exist", "pass ppl:FILE, ppl:DIR or ppl:SHARDS")
        if not t.startswith(PPL_SPEC):
            load_task(t)
    lm = load_model(model, device=device)
    results = [evaluate_task(lm, t, shots, limit, seed, chat, progress, batch_size) for t in tasks]
    report = {"model": model, "shots": shots, "limit": limit, "seed": seed, "chat": chat, "complete": True,
              "results": [r.summary() for r in results]}
    if out_dir:
        if write_samples:
            write_samples_files(Path(out_dir), results)
        write_results(Path(out_dir), [report])
    return report


SMALL_EVAL = ("arc_easy", "hellaswag", "piqa")


def small_eval(model: str, tasks: tuple[str, ...] = SMALL_EVAL, limit: int = 50) -> list[dict]:
    """A quick report-card eval: acc_norm per task next to the chance rate (for the quickstart)."""
    from llmkit.formats.loader import load_model

    lm = load_model(model, device="cpu")
    rows = []
    for name in tasks:
        items, _ = _collect(load_task(name), 0, 1234, limit)
        r = evaluate_task(lm, name, limit=limit, progress=False)
        chance = sum(1 / it.n_choices for it in items) / max(len(items), 1)
        rows.append({"task": name, "n": r.n, "metric": "acc_norm", "value": r.metrics["acc_norm"],
                     "stderr": r.stderr["acc_norm"], "chance": chance})
    return rows


def primary_metric(result: dict) -> str:
    """The number a task is usually quoted by: acc_norm where it exists, else the first metric."""
    return "acc_norm" if "acc_norm" in result["metrics"] else next(iter(result["metrics"]))


def markdown_table(reports: list[dict]) -> str:
    """One row per (model, task, metric), lm-evaluation-harness style."""
    lines = ["| model | task | shots | n | metric | value | ± stderr |", "|---|---|---|---|---|---|---|"]
    for rep in reports:
        for r in rep["results"]:
            for k, v in r["metrics"].items():
                err = r["stderr"].get(k)
                lines.append(f"| {rep['model']} | {r['task']} | {r['shots']} | {r['n']} | {k} | {v:.4f} | "
                             + (f"{err:.4f} |" if err is not None else "|"))
    return "\n".join(lines) + "\n"


def write_samples_files(out: Path, results: list[TaskResult]) -> None:
    from llmkit.core.fileio import atomic_write_file

    for r in results:
        if r.samples:
            name = r.task.replace("/", "_").replace(":", "_")
            atomic_write_file(out / "samples" / f"{name}.jsonl",
                              "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in r.samples))


def write_results(out: Path, reports: list[dict]) -> None:
    from llmkit.core.fileio import atomic_write_file

    atomic_write_file(out / "results.json", json.dumps(reports if len(reports) > 1 else reports[0], indent=2))
    atomic_write_file(out / "results.md", markdown_table(reports))
    if len(reports) > 1:
        plot_comparison(reports, out / "results.png")


def plot_comparison(reports: list[dict], path: Path) -> Path:
    """Grouped bar chart: one group per task, one bar per model (the task's primary metric with stderr)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [r["task"] for r in reports[0]["results"]]
    width = 0.8 / len(reports)
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(tasks)), 4), dpi=120)
    for i, rep in enumerate(reports):
        keys = [primary_metric(r) for r in rep["results"]]
        vals = [r["metrics"][k] if k != "perplexity" else 0.0 for r, k in zip(rep["results"], keys)]
        errs = [r["stderr"].get(k, 0.0) for r, k in zip(rep["results"], keys)]
        ax.bar([j + i * width for j in range(len(tasks))], vals, width, yerr=errs, capsize=3, label=rep["model"])
    labels = [f"{t}\n({primary_metric(r)})" for t, r in zip(tasks, reports[0]["results"])]
    ax.set_xticks([j + width * (len(reports) - 1) / 2 for j in range(len(tasks))], labels)
    ax.set_ylabel("score")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

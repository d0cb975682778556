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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llmkit.core.errors import ConfigError
from llmkit.eval.loglik import score_choices, split_pair
from llmkit.eval.metrics import acc_norm_choice, argmax, mean_stderr
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


def _chat_context(lm, context: str) -> str:
    from llmkit.generate.api import chat_template_for

    return chat_template_for(lm).render_text([{"role": "user", "content": context.rstrip()}],
                                             add_generation_prompt=True)


def score_item(lm, item: Item, chat: bool = False) -> list[float]:
    """Log-likelihood of each choice of one item."""
    reqs = item.requests()
    if chat:
        reqs = [(_chat_context(lm, c), x.lstrip()) for c, x in reqs]
    contexts = {c for c, _ in reqs}
    if len(contexts) == 1:  # shared context: one prefill for all choices
        ctx_ids, _ = split_pair(lm.tokenizer, reqs[0][0], reqs[0][1])
        conts = [split_pair(lm.tokenizer, c, x)[1] for c, x in reqs]
        return [s.logprob for s in score_choices(lm.model, ctx_ids, conts)]
    out = []  # e.g. Winogrande: one context per option, shared continuation
    for c, x in reqs:
        ctx_ids, cont = split_pair(lm.tokenizer, c, x)
        out.append(score_choices(lm.model, ctx_ids, [cont])[0].logprob)
    return out


def _expand(task: Task) -> list[Task]:
    return [load_task(s) for s in task.subtasks] if task.subtasks else [task]


def evaluate_task(lm, name: str, shots: int = 0, limit: int | None = None, seed: int = 1234,
                  chat: bool = False, progress: bool = True) -> TaskResult:
    task = load_task(name)
    if task.kind != "mc":
        raise ConfigError(f"task {name!r} is {task.kind!r}; this version scores multiple-choice tasks",
                          "pick a multiple-choice task (see `llmkit eval --list`)")
    t0 = time.perf_counter()
    notes: list[str] = []
    items: list[Item] = []
    for sub in _expand(task):  # --limit applies per subject for aggregates such as mmlu
        sub_items = sub.items(shots=shots, seed=seed, limit=limit)
        total = len(sub.docs())
        if limit is not None and limit > total:
            notes.append(f"{sub.name}: --limit {limit} is more than its {total} items; using all {total}")
        items.extend(sub_items)
    correct, correct_norm, per_sub = [], [], {}
    bar = _bar(progress, len(items), name)
    for item in items:
        lls = score_item(lm, item, chat)
        hit, hit_norm = float(argmax(lls) == item.gold), float(acc_norm_choice(lls, list(item.choices)) == item.gold)
        correct.append(hit)
        correct_norm.append(hit_norm)
        per_sub.setdefault(item.task, []).append(hit)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(acc=f"{sum(correct) / len(correct):.3f}")
    if bar is not None:
        bar.close()
    n = len(items)
    metrics = {"acc": sum(correct) / max(n, 1), "acc_norm": sum(correct_norm) / max(n, 1)}
    stderr = {"acc": mean_stderr(correct), "acc_norm": mean_stderr(correct_norm)}
    subtasks = {k: {"acc": sum(v) / len(v), "n": len(v)} for k, v in per_sub.items()} if task.subtasks else {}
    return TaskResult(name, n, shots, metrics, stderr, time.perf_counter() - t0, notes, subtasks)


def _bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="item", dynamic_ncols=True)


def evaluate(model: str, tasks: list[str], shots: int = 0, limit: int | None = None, seed: int = 1234,
             chat: bool = False, out_dir: str | None = None, device: str = "auto",
             progress: bool = True) -> dict:
    """Score one model on several tasks; writes results.json + results.md into out_dir if given."""
    from llmkit.formats.loader import load_model

    if not tasks:
        raise ConfigError("no tasks given", "pass e.g. --tasks arc_easy,hellaswag")
    if limit is not None and limit <= 0:
        raise ConfigError(f"--limit must be positive (got {limit})", "omit it to use every item")
    for t in tasks:
        load_task(t)  # fail on an unknown task before loading the model
    lm = load_model(model, device=device)
    results = [evaluate_task(lm, t, shots, limit, seed, chat, progress) for t in tasks]
    report = {"model": model, "shots": shots, "limit": limit, "seed": seed, "chat": chat, "complete": True,
              "results": [asdict(r) for r in results]}
    if out_dir:
        write_results(Path(out_dir), [report])
    return report


def markdown_table(reports: list[dict]) -> str:
    lines = ["| model | task | shots | n | acc | acc_norm |", "|---|---|---|---|---|---|"]
    for rep in reports:
        for r in rep["results"]:
            m, e = r["metrics"], r["stderr"]
            lines.append(f"| {rep['model']} | {r['task']} | {r['shots']} | {r['n']} | {m['acc']:.4f} ± {e['acc']:.4f} "
                         f"| {m['acc_norm']:.4f} ± {e['acc_norm']:.4f} |")
    return "\n".join(lines) + "\n"


def write_results(out: Path, reports: list[dict]) -> None:
    from llmkit.core.fileio import atomic_write_file

    atomic_write_file(out / "results.json", json.dumps(reports if len(reports) > 1 else reports[0], indent=2))
    atomic_write_file(out / "results.md", markdown_table(reports))
    if len(reports) > 1:
        plot_comparison(reports, out / "results.png")


def plot_comparison(reports: list[dict], path: Path) -> Path:
    """Grouped bar chart: one group per task, one bar per model (acc_norm with stderr)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [r["task"] for r in reports[0]["results"]]
    width = 0.8 / len(reports)
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(tasks)), 4), dpi=120)
    for i, rep in enumerate(reports):
        vals = [r["metrics"]["acc_norm"] for r in rep["results"]]
        errs = [r["stderr"]["acc_norm"] for r in rep["results"]]
        ax.bar([j + i * width for j in range(len(tasks))], vals, width, yerr=errs, capsize=3, label=rep["model"])
    ax.set_xticks([j + width * (len(reports) - 1) / 2 for j in range(len(tasks))], tasks)
    ax.set_ylabel("acc_norm")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

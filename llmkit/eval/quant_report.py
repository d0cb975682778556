"""`llmkit quantize --report`: what quantization cost and bought, against the float model.

For the float and the quantized model on the same held-out text: perplexity
and next-token accuracy, optional multiple-choice task accuracy (the eval
harness), weight bytes in memory, and batch-1 greedy decode speed. Written as
report.md (a table) and report.png (bars) next to the checkpoint.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from llmkit.core.fileio import atomic_write_file


@torch.no_grad()
def heldout_scores(model, ids: list[int], window: int = 512, max_tokens: int = 8192) -> dict[str, float]:
    """Perplexity and top-1 next-token accuracy over non-overlapping windows of ``ids``.

    (The eval package's sliding-window perplexity is the general tool; this
    fixed split keeps the float and quantized models on exactly the same targets.)
    """
    ids = torch.tensor(ids[: max_tokens + 1])
    window = min(window, model.cfg.max_seq_len)
    nll, hits, n = 0.0, 0, 0
    for start in range(0, ids.numel() - 1, window):
        chunk = ids[start : start + window + 1]
        if chunk.numel() < 2:
            break
        logits = model(chunk[None, :-1])[0].float()  # (T, V)
        targets = chunk[1:]
        nll += F.cross_entropy(logits, targets, reduction="sum").item()
        hits += int((logits.argmax(-1) == targets).sum())
        n += targets.numel()
    return {"perplexity": math.exp(nll / n), "next_token_acc": hits / n, "tokens": n}


def weight_bytes(model) -> int:
    """Bytes of every parameter and persistent buffer (a tied weight counted once)."""
    seen, total = set(), 0
    for t in list(model.parameters()) + [b for b in model.buffers() if b is not None]:
        if t.data_ptr() in seen or t.device.type == "meta":
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    rope = sum(b.numel() * b.element_size() for n, b in model.named_buffers() if n.startswith("rope_"))
    return total - rope


def decode_tok_s(lm, tokens: int = 32, prompt: str = "Write a short story about a robot.") -> float:
    """Batch-1 greedy decode tokens/s, prompt prefill excluded (time for N tokens minus time for 1)."""
    from llmkit.generate import Engine, SamplingParams
    from llmkit.generate.api import prompt_ids

    engine = Engine(lm.model, lm.tokenizer)
    p = prompt_ids(lm, prompt, chat=False)

    def run(n):
        t = time.perf_counter()
        engine.generate([p], SamplingParams(max_tokens=n, temperature=0, ignore_eos=True))
        return time.perf_counter() - t

    run(2)
    t1, tn = min(run(1) for _ in range(2)), min(run(tokens) for _ in range(2))
    return (tokens - 1) / max(tn - t1, 1e-9)


def compare(lms: dict[str, Any], heldout_text: str, tasks: list[str] = (), limit: int | None = 50,
            speed_tokens: int = 32) -> list[dict[str, Any]]:
    """One row per model label: perplexity, next-token accuracy, task accuracy, MB, tok/s."""
    from llmkit.eval.harness import evaluate_task

    rows = []
    for label, lm in lms.items():
        ids = lm.tokenizer.encode(heldout_text, disallowed_special=())
        row = {"model": label, **heldout_scores(lm.model, ids), "weight_mb": weight_bytes(lm.model) / 1e6,
               "decode_tok_s": decode_tok_s(lm, speed_tokens)}
        for task in tasks:
            row[f"{task}_acc"] = evaluate_task(lm, task, limit=limit, progress=False).metrics["acc"]
        rows.append(row)
    base = rows[0]
    for r in rows:
        r["perplexity_delta_pct"] = 100 * (r["perplexity"] / base["perplexity"] - 1)
        r["next_token_acc_delta"] = r["next_token_acc"] - base["next_token_acc"]
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    extra = [k for k in rows[0] if k.endswith("_acc") and k != "next_token_acc"]
    head = ["model", "perplexity", "Δ ppl", "next-token acc", "Δ acc", *extra, "weights MB", "decode tok/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], f"{r['perplexity']:.3f}", f"{r['perplexity_delta_pct']:+.2f}%",
                 f"{r['next_token_acc']:.4f}", f"{r['next_token_acc_delta']:+.4f}",
                 *[f"{r[k]:.3f}" for k in extra], f"{r['weight_mb']:.0f}", f"{r['decode_tok_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nHeld-out tokens scored: {rows[0]['tokens']}.\n"


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    names = [r["model"] for r in rows]
    for ax, key, title in zip(axes, ("perplexity", "weight_mb", "decode_tok_s"),
                              ("held-out perplexity", "weights (MB)", "decode tok/s, batch 1")):
        ax.bar(names, [r[key] for r in rows], color=["#888"] + ["#3b7dd8"] * (len(rows) - 1))
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_report(rows: list[dict[str, Any]], out_dir: Path) -> tuple[Path, Path]:
    md = atomic_write_file(out_dir / "report.md", "# Quantization report\n\n" + markdown(rows))
    return md, plot(rows, out_dir / "report.png")

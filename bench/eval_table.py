"""The full-run table of docs/benchmarks.md, from the committed results of bench/eval_full.sh.

    python bench/eval_table.py [bench/results/eval-full]

Published numbers are context, copied from where they were published (not measured here):
- card: the SmolLM2-135M-Instruct model card (lighteval; zero-shot unless noted; ARC is the
  average of Easy and Challenge; MMLU is the cloze formulation);
- lm-eval: a third-party lm-evaluation-harness 0-shot run of the same model (the baseline column
  of the lldois/SmolLM2-135M-Reasoning-SLERP-Champion card).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# run dir -> (label, metric, published card value, published lm-eval value)
ROWS = [
    ("arc_easy-0", "ARC-Easy (test, 2376)", "acc", None, 54.12),
    ("arc_easy-0", "ARC-Easy (test, 2376)", "acc_norm", None, None),
    ("arc_challenge-0", "ARC-Challenge (test, 1172)", "acc", None, None),
    ("arc_challenge-0", "ARC-Challenge (test, 1172)", "acc_norm", None, 27.73),
    ("hellaswag-0", "HellaSwag (val, 10042)", "acc_norm", 40.9, 42.99),
    ("piqa-0", "PIQA (val, 1838)", "acc_norm", 66.3, 66.92),
    ("winogrande-0", "Winogrande (val, 1267)", "acc", None, None),
    ("mmlu-0", "MMLU letters, 0-shot (14042)", "acc", None, None),
    ("mmlu-5", "MMLU letters, 5-shot (14042)", "acc", None, None),
    ("mmlu_cloze-0", "MMLU cloze, 0-shot (14042)", "acc_norm", 29.3, None),
    ("gsm8k-5", "GSM8K, 5-shot CoT (1319)", "exact_match", 1.4, 0.38),
]


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:g}"


def table(root: Path) -> str:
    lines = ["| benchmark | metric | llmkit | ± | card | lm-eval |", "|---|---|---|---|---|---|"]
    pending = []
    for run, label, metric, card, lm_eval in ROWS:
        path = root / run / "results.json"
        if not path.is_file():
            pending.append(label)
            continue
        res = json.loads(path.read_text())["results"][0]
        if metric not in res["metrics"]:
            continue
        ours, err = 100 * res["metrics"][metric], 100 * res["stderr"].get(metric, 0.0)
        lines.append(f"| {label} | {metric} | {ours:.2f} | {err:.2f} | {_fmt(card)} | {_fmt(lm_eval)} |")
    arc = [root / f"{t}-0" / "results.json" for t in ("arc_easy", "arc_challenge")]
    if all(p.is_file() for p in arc):
        norm = [json.loads(p.read_text())["results"][0]["metrics"]["acc_norm"] for p in arc]
        lines.append(f"| ARC average (Easy, Challenge) | acc_norm | {50 * sum(norm):.2f} | | 37.3 | — |")
    if pending:
        lines.append("")
        lines.append("Not run yet: " + ", ".join(dict.fromkeys(pending)) + ".")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/eval-full")))

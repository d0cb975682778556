"""Train the injection detector's logistic regression on synthetic data, and measure it.

Full-batch Adam on the hashed sparse features in numpy: deterministic for a seed (no
threads, no sampling after generation), a few seconds on one core. The reported numbers
are for the shipped float16 weights, so a retrain reproduces them exactly.

    report = train_detector(out="llmkit/guard/detector.npz")
    report["held_out"]["combined"]    # {'precision': ..., 'recall': ..., 'f1': ..., 'n': ...}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from llmkit.guard.detector import BITS, InjectionDetector, features, load_detector
from llmkit.guard.synth import Example, boolq_passages, generate

REALISTIC = Path(__file__).with_name("realistic_cases.jsonl")


def pack(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR-style (indices, values, row offsets) for a list of texts."""
    feats = [features(t) for t in texts]
    offsets = np.cumsum([0] + [len(i) for i, _ in feats])
    idx = np.concatenate([i for i, _ in feats]) if feats else np.zeros(0, np.int64)
    vals = np.concatenate([v for _, v in feats]) if feats else np.zeros(0, np.float32)
    return idx, vals, offsets


def _logits(w: np.ndarray, b: float, idx, vals, offsets) -> np.ndarray:
    contrib = w[idx] * vals
    sums = np.add.reduceat(contrib, offsets[:-1]) if len(contrib) else np.zeros(len(offsets) - 1)
    sums[offsets[:-1] == offsets[1:]] = 0.0  # reduceat copies the next value into empty rows
    return sums + b


def fit_logreg(idx, vals, offsets, y: np.ndarray, steps: int = 300, lr: float = 0.05,
               l2: float = 1e-5) -> tuple[np.ndarray, float]:
    """Minimise mean BCE + l2 * ||w||^2 with Adam; returns (weights over 2**BITS buckets, bias)."""
    n = len(y)
    rows = np.repeat(np.arange(n), np.diff(offsets))
    w, b = np.zeros(1 << BITS, np.float64), 0.0
    m, v, mb, vb = np.zeros_like(w), np.zeros_like(w), 0.0, 0.0
    for t in range(1, steps + 1):
        z = _logits(w, b, idx, vals, offsets)
        err = (1.0 / (1.0 + np.exp(-z)) - y) / n  # dBCE/dz, averaged
        g = np.bincount(idx, weights=err[rows] * vals, minlength=1 << BITS) + 2 * l2 * w
        gb = err.sum()
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        mb, vb = 0.9 * mb + 0.1 * gb, 0.999 * vb + 0.001 * gb * gb
        w -= lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        b -= lr * (mb / (1 - 0.9 ** t)) / (np.sqrt(vb / (1 - 0.999 ** t)) + 1e-8)
    return w, b


def prf(pred: Sequence[bool], gold: Sequence[int]) -> dict[str, float]:
    """Precision, recall, F1 and false-positive rate of binary predictions."""
    tp = sum(p and g for p, g in zip(pred, gold))
    fp = sum(p and not g for p, g in zip(pred, gold))
    fn = sum(not p and g for p, g in zip(pred, gold))
    neg = sum(not g for g in gold)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "fpr": fp / neg if neg else 0.0, "n": len(gold)}


def evaluate(det: InjectionDetector, texts: Sequence[str], labels: Sequence[int]) -> dict[str, dict]:
    """Metrics for the classifier alone and for the full detector (heuristics + decodings)."""
    clf = [det.probability(t) >= det.threshold for t in texts]
    full = [det.detect(t).flagged for t in texts]
    return {"classifier": prf(clf, labels), "combined": prf(full, labels)}


def realistic_cases(path: Path = REALISTIC) -> list[Example]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Example(r["text"], int(r["label"]), r.get("kind", "")) for r in rows]


def squad_passages(limit: int = 500) -> list[str]:
    """Real text never seen in training (SQuAD paragraphs), for the false-positive rate."""
    from llmkit.rag.evaluate import squad_items

    passages, _ = squad_items()
    return [p.text for p in passages[:limit]]


def train_detector(out: str | Path | None = None, n: int = 12000, seed: int = 0, steps: int = 300,
                   held_out: float = 0.2) -> dict:
    """Generate, split, fit, round to float16, measure; write weights to ``out`` if given."""
    data = generate(n, seed, boolq_passages())
    cut = int(len(data) * (1 - held_out))
    train, test = data[:cut], data[cut:]
    y = np.array([e.label for e in train], np.float64)
    w, b = fit_logreg(*pack([e.text for e in train]), y, steps=steps)
    det = InjectionDetector(w.astype(np.float16).astype(np.float32), float(np.float32(b)))
    if out:
        det.save(out)
    real = realistic_cases()
    squad = squad_passages()
    return {"seed": seed, "train": len(train), "held_out_n": len(test), "bits": BITS, "steps": steps,
            "held_out": evaluate(det, [e.text for e in test], [e.label for e in test]),
            "realistic": evaluate(det, [e.text for e in real], [e.label for e in real]),
            "squad_benign_fpr": evaluate(det, squad, [0] * len(squad))["combined"]["fpr"],
            "weights": str(out) if out else None}


def measure_shipped() -> dict:
    """Realistic-set metrics of the shipped weights (what the guard actually uses)."""
    det = load_detector()
    real = realistic_cases()
    return evaluate(det, [e.text for e in real], [e.label for e in real])

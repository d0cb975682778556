"""Training metrics: one JSON object per line, a loss-curve PNG, optional TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MetricsLog:
    def __init__(self, out_dir: Path, tensorboard: bool = False, enabled: bool = True):
        self.path = out_dir / "metrics.jsonl"
        self.enabled = enabled
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(out_dir / "tb"))
            except ImportError:
                print("tensorboard is not installed (pip install tensorboard); logging to JSONL only")

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, record["step"])

    def truncate_after(self, step: int) -> None:
        """Drop records past `step`: a fresh run starts empty, a resumed one forgets steps it will redo."""
        if not self.enabled or not self.path.is_file():
            return
        from llmkit.core.fileio import atomic_write_file

        kept = [r for r in self.records() if r.get("step", 0) <= step]
        atomic_write_file(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def plot_loss(records: list[dict[str, Any]], out_png: Path, title: str = "training loss") -> Path | None:
    """Train loss (per logged step) and val loss (per eval) against step."""
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    if not train and not val:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if train:
        ax.plot(*zip(*train), label="train", linewidth=1)
    if val:
        ax.plot(*zip(*val), "o-", label="val", linewidth=1.5, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png

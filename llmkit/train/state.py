"""Training checkpoints: an llmkit checkpoint plus `trainer.pt` (optimizer, data position, RNG).

    out_dir/
      ckpt-000200/   model.safetensors, config.json, tokenizer files, meta.json, trainer.pt
      ckpt-000400/
      latest         the name of the newest complete checkpoint (written last, atomically)

A checkpoint is complete once its directory is renamed into place; `latest`
is updated only after that, so killing the process at any moment leaves the
previous checkpoint loadable. `trainer.pt` holds only tensors, numbers and
strings and is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import io
import random
import shutil
from pathlib import Path
from typing import Any

import torch

from llmkit.core import checkpoint as ckpt
from llmkit.core.errors import CheckpointError
from llmkit.core.fileio import atomic_write_file

TRAINER_FILE = "trainer.pt"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_train_checkpoint(out_dir: Path, step: int, model_cfg, state_dict: dict[str, torch.Tensor], tokenizer,
                          trainer: dict[str, Any], meta: dict[str, Any], keep_last: int) -> Path:
    buf = io.BytesIO()
    torch.save(trainer, buf)
    files: dict[str, bytes] = {TRAINER_FILE: buf.getvalue()}
    if tokenizer is not None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            tokenizer.save(tmp)
            files.update({f.name: f.read_bytes() for f in Path(tmp).iterdir() if f.is_file()})
    name = f"ckpt-{step:06d}"
    for stale in out_dir.glob(".ckpt-*"):  # temp dirs of saves a crash or SIGKILL interrupted
        shutil.rmtree(stale, ignore_errors=True)
    tensors = {k: v for k, v in state_dict.items() if not (model_cfg.tie_embeddings and k == "lm_head.weight")}
    path = ckpt.save_checkpoint(out_dir / name, tensors, model_cfg.to_dict(), {**meta, "step": step}, files)
    atomic_write_file(out_dir / "latest", name + "\n")
    for old in sorted(out_dir.glob("ckpt-*"))[:-keep_last]:
        if old.name != name:  # rename first: a half-deleted directory must never look like a checkpoint
            trash = out_dir / f".ckpt-trash-{old.name}"
            old.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
    return path


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint: `latest` if valid, else the newest ckpt-* that loads."""
    pointer = out_dir / "latest"
    if pointer.is_file():
        cand = out_dir / pointer.read_text().strip()
        if ckpt.is_checkpoint(cand) and (cand / TRAINER_FILE).is_file():
            return cand
    for cand in sorted(out_dir.glob("ckpt-*"), reverse=True):
        if ckpt.is_checkpoint(cand) and (cand / TRAINER_FILE).is_file():
            return cand
    return None


def load_trainer_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path / TRAINER_FILE, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as e:
        raise CheckpointError(f"cannot read {str(path / TRAINER_FILE)!r}: {e}",
                              "the checkpoint is damaged; delete it to resume from the one before") from e

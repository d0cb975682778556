"""Character-level tiny-shakespeare: time to val loss <= 1.88, llmkit's recipe vs nanoGPT's CPU recipe.

    python bench/pretrain_vs_nanogpt.py [--data ../shared/data/tinyshakespeare.txt] [--only ours|nanogpt]

nanoGPT's README CPU recipe (train_shakespeare_char with --device=cpu --block_size=64 --batch_size=12
--n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0) reaches val
loss 1.886 in 5 min 36 s on this machine kind (DESIGN.md). This script runs, in one process:

- "nanogpt": that recipe re-expressed in llmkit (GPT-2 block: learned positions, LayerNorm, GELU,
  no biases, untied head? nanoGPT ties wte/lm_head — so do we; AdamW lr 1e-3, beta2 0.99, wd 0.1,
  warmup 100, cosine to 1e-4 over 2000 iters, grad clip 1.0), on llmkit's training loop;
- "ours": the same size and batch (4 layers, 4 heads, 128 dims, block 64, batch 12, dropout 0) with
  llmkit's defaults for small models: RoPE, RMSNorm, SwiGLU, a higher peak lr with warmup + cosine.

Both use nanoGPT's data handling: characters as tokens, the first 90% to train, random crops.
It prints the val-loss curve of each and the wall time (training + eval) to reach val loss <= 1.88,
and the ratio against nanoGPT's published-here 336 s.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from llmkit.train.config import TrainConfig
from llmkit.train.loop import pretrain

NANOGPT_SECONDS = 336.0  # DESIGN.md: nanoGPT CPU recipe, val 1.886 in 5 min 36 s on this machine kind
TARGET = 1.88


class CharCrops:
    """nanoGPT's get_batch: random windows of block+1 characters, seeded, resumable."""

    bytes_per_token = 1.0

    def __init__(self, data: torch.Tensor, batch: int, block: int, seed: int):
        self.data, self.batch, self.block = data, batch, block
        self.gen = torch.Generator().manual_seed(seed)

    def __iter__(self):
        while True:
            ix = torch.randint(len(self.data) - self.block - 1, (self.batch,), generator=self.gen)
            x = torch.stack([self.data[i:i + self.block] for i in ix.tolist()])
            y = torch.stack([self.data[i + 1:i + 1 + self.block] for i in ix.tolist()])
            yield x, y

    def state_dict(self):
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, s):
        self.gen.set_state(s["gen"])


RECIPES = {
    "nanogpt": dict(model="tiny-gpt", overrides=dict(norm="layernorm", mlp="gelu", pos="learned", mlp_bias=False,
                                                     qkv_bias=False, attn_out_bias=False),
                    lr=1e-3, min_lr=1e-4, warmup=100, beta2=0.99, max_steps=2000),
    "ours": dict(model="tiny-llama", overrides=dict(n_kv_head=4), lr=4e-3, min_lr=4e-4, warmup=50, beta2=0.99,
                 max_steps=1200),
}


def run(name: str, text: str, out: Path, eval_every: int) -> list[tuple[int, float, float]]:
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n = int(0.9 * len(data))
    train, val = data[:n], data[n:]
    r = RECIPES[name]
    overrides = dict(vocab_size=len(chars), n_layer=4, n_head=4, d_model=128, max_seq_len=64, dropout=0.0,
                     **r["overrides"])
    curve: list[tuple[int, float, float]] = []
    t0 = time.perf_counter()

    def on_eval(step, model):
        pass

    cfg = TrainConfig(model=r["model"], model_overrides=overrides, out_dir=str(out / name), batch_size=12,
                      seq_len=64, max_steps=r["max_steps"], lr=r["lr"], min_lr=r["min_lr"], warmup=r["warmup"],
                      beta2=r["beta2"], weight_decay=0.1, grad_clip=1.0, eval_every=eval_every, eval_batches=20,
                      ckpt_every=10**9, log_every=50, resume=False, device="cpu", progress=False)

    def loaders(rank, world):
        return CharCrops(train, 12, 64, seed=1337), (lambda: CharCrops(val, 12, 64, seed=42))

    import llmkit.train.loop as loop

    original = loop.evaluate

    def timed_eval(model, factory, batches, device):
        loss = original(model, factory, batches, device)
        curve.append((len(curve) * eval_every + eval_every, loss, time.perf_counter() - t0))
        print(f"  [{name}] step {curve[-1][0]:>5}  val {loss:.4f}  t={curve[-1][2]:6.1f}s", flush=True)
        return loss

    loop.evaluate = timed_eval
    try:
        pretrain(cfg, loaders, on_eval=on_eval)
    finally:
        loop.evaluate = original
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare.txt"))
    ap.add_argument("--only", choices=list(RECIPES), default=None)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--out", default="runs/bench-nanogpt")
    a = ap.parse_args()
    text = Path(a.data).read_text()
    torch.manual_seed(0)
    results = {}
    for name in ([a.only] if a.only else list(RECIPES)):
        print(f"{name}: {RECIPES[name]}")
        curve = run(name, text, Path(a.out), a.eval_every)
        hit = next(((s, v, t) for s, v, t in curve if v <= TARGET), None)
        results[name] = (hit, curve[-1])
    print("\n| recipe | time to val <= 1.88 | at step | final val | vs nanoGPT 336 s |\n|---|---|---|---|---|")
    for name, (hit, last) in results.items():
        if hit:
            print(f"| {name} | {hit[2]:.0f} s | {hit[0]} | {last[1]:.3f} | {hit[2] / NANOGPT_SECONDS:.2f}x |")
        else:
            print(f"| {name} | not reached | - | {last[1]:.3f} | - |")


if __name__ == "__main__":
    main()

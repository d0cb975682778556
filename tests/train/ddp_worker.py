"""Run by tests/train/test_ddp.py under torchrun (or alone): a tiny pretraining on synthetic tokens."""

import json
import os
import sys

import torch

from llmkit.core.runtime import dist_info
from llmkit.train.config import TrainConfig
from llmkit.train.loop import pretrain

GLOBAL_BATCH, SEQ, VOCAB = 8, 16, 97


class ShardedRandomTokens:
    """Every rank builds the same global batch and keeps its own rows (what TokenLoader does)."""

    bytes_per_token = 3.0

    def __init__(self, rank, world, seed=0):
        self.rank, self.world, self.seed, self.pos = rank, world, seed, 0

    def __iter__(self):
        per = GLOBAL_BATCH // self.world
        while True:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.pos)
            self.pos += 1
            data = torch.randint(0, VOCAB, (GLOBAL_BATCH, SEQ + 1), generator=g)[self.rank * per:(self.rank + 1) * per]
            yield data[:, :-1], data[:, 1:]

    def state_dict(self):
        return {"pos": self.pos}

    def load_state_dict(self, s):
        self.pos = s["pos"]


def main(out_dir: str) -> None:
    rank, _, world = dist_info()
    cfg = TrainConfig(model="tiny-llama", model_overrides={"vocab_size": VOCAB, "n_layer": 2, "d_model": 32,
                                                           "n_head": 2, "n_kv_head": 1, "max_seq_len": 64},
                      out_dir=out_dir, batch_size=GLOBAL_BATCH // world, seq_len=SEQ, max_steps=6, warmup=2,
                      lr=1e-2, eval_every=3, eval_batches=2, ckpt_every=6, log_every=1, progress=False,
                      device="cpu", fsdp=os.environ.get("LLMKIT_TEST_FSDP") == "1")
    res = pretrain(cfg, lambda r, w: (ShardedRandomTokens(r, w), lambda: ShardedRandomTokens(r, w, seed=5)))
    if rank == 0:
        with open(f"{out_dir}/result.json", "w") as f:
            json.dump({"loss": res.loss, "val_loss": res.val_loss, "world": world}, f)


if __name__ == "__main__":
    main(sys.argv[1])

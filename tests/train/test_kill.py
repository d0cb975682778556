"""SIGKILL at any moment (including mid-save) leaves the last good checkpoint loadable, and resume continues."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from llmkit.core.checkpoint import load_checkpoint
from llmkit.train.state import latest_checkpoint, load_trainer_state

SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from ddp_worker import ShardedRandomTokens, VOCAB
from llmkit.train.config import TrainConfig
from llmkit.train.loop import pretrain
cfg = TrainConfig(model="tiny-llama", model_overrides={{"vocab_size": VOCAB, "n_layer": 2, "d_model": 64,
                  "n_head": 2, "max_seq_len": 64}}, out_dir={out!r}, batch_size=4, seq_len=16,
                  max_steps={steps}, warmup=1, eval_every=1000, ckpt_every=1, keep_last=2, progress=False,
                  device="cpu")
pretrain(cfg, lambda r, w: (ShardedRandomTokens(r, w), lambda: ShardedRandomTokens(r, w, seed=5)))
"""


def test_sigkill_mid_training_then_resume(tmp_path):
    out = tmp_path / "run"
    code = SCRIPT.format(tests=str(Path(__file__).parent), out=str(out), steps=100_000)
    for delay in (0.05, 0.13, 0.31):  # kill at several points relative to the save cycle
        proc = subprocess.Popen([sys.executable, "-c", code])
        deadline = time.time() + 120
        while latest_checkpoint(out) is None and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        good = latest_checkpoint(out)
        assert good is not None
        load_checkpoint(good)  # weights, config and meta read back
        assert load_trainer_state(good)["step"] >= 1
    step = load_trainer_state(latest_checkpoint(out))["step"]
    finish = SCRIPT.format(tests=str(Path(__file__).parent), out=str(out), steps=step + 3)
    subprocess.run([sys.executable, "-c", finish], check=True, timeout=120)
    assert load_trainer_state(latest_checkpoint(out))["step"] == step + 3

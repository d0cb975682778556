"""Two CPU processes with gloo (torchrun), DDP or FSDP2 == one process on the same global batch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llmkit.core.checkpoint import load_checkpoint
from llmkit.train.state import latest_checkpoint

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_two_processes_equal_one(tmp_path, fsdp):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    subprocess.run([sys.executable, str(WORKER), str(single)], check=True, timeout=300)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(WORKER), str(ddp)]
    env = {**os.environ, "LLMKIT_TEST_FSDP": "1" if fsdp else "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((ddp / "result.json").read_text())["world"] == 2

    def losses(d):
        return [r["loss"] for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines()) if "loss" in r]

    torch.testing.assert_close(torch.tensor(losses(ddp)), torch.tensor(losses(single)), rtol=1e-5, atol=1e-6)
    a = load_checkpoint(latest_checkpoint(single)).tensors
    b = load_checkpoint(latest_checkpoint(ddp)).tensors
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
    assert len(list(ddp.glob("ckpt-*"))) == 1  # only rank 0 writes

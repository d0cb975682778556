"""`llmkit finetune ...` and `llmkit lora merge` as a user meets them: results on disk, one-line errors."""

import json
import os
import subprocess
import sys

import pytest
import torch

from llmkit.formats.loader import load_model, save_model
from llmkit.train.ft_config import FT_CONFIG_DIR, METHODS, load_finetune_config

from .conftest import tiny_model


def run(*args, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny models: one thread is far faster on a busy machine
    return subprocess.run([sys.executable, "-m", "llmkit", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def one_line_error(proc, *needles):
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory, smol_tok):
    path = tmp_path_factory.mktemp("cli") / "tiny"
    save_model(path, tiny_model(smol_tok.vocab_size, tie=False), smol_tok, {"stage": "test"})
    return path


def _chats(path, n=12, assistant=True):
    recs = [{"conversations": [{"from": "human", "value": f"{i}+1?"}] +
             ([{"from": "gpt", "value": str(i + 1)}] if assistant else [])} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_every_packaged_config_loads():
    names = sorted(p.stem for p in FT_CONFIG_DIR.glob("*.yaml"))
    assert {f"{m}-lora" for m in METHODS} <= set(names)
    for n in names:
        load_finetune_config(n)


def test_sft_then_lora_merge(base, tmp_path):
    data = _chats(tmp_path / "chats.jsonl")
    out = tmp_path / "run"
    proc = run("finetune", "sft", "--config", "sft-lora", "--init-from", str(base), "--data", str(data),
               "--out-dir", str(out), "--max-steps", "2", "--batch-size", "2", "--eval-size", "2", "--max-len", "64",
               "--lora-targets", '["q_proj","v_proj"]', "--progress", "false", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "adapter:" in proc.stdout and "final:" in proc.stdout
    proc = run("lora", "merge", str(base), str(out / "adapter"), str(tmp_path / "merged"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = load_model(tmp_path / "merged", device="cpu").model
    final = load_model(out / "final", device="cpu").model
    idx = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(merged(idx), final(idx))  # CLI merge == the trainer's own merged export
    proc = run("lora", "merge", str(base), str(out / "adapter"), str(tmp_path / "merged-hf"), "--to", "hf")
    assert proc.returncode == 0 and (tmp_path / "merged-hf" / "config.json").is_file()


def test_bad_inputs_are_one_line_errors(base, tmp_path):
    flags = ["--init-from", str(base), "--out-dir", str(tmp_path / "r"), "--device", "cpu", "--progress", "false"]
    one_line_error(run("finetune", "sft", "--data", str(_chats(tmp_path / "x.jsonl", assistant=False)), *flags),
                   "line 1 has no assistant turn")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n{oops\n')
    one_line_error(run("finetune", "sft", "--data", str(bad), *flags), "bad.jsonl line 2 is not valid JSON")
    good = str(_chats(tmp_path / "g.jsonl"))
    one_line_error(run("finetune", "sft", "--data", good, "--lora-r", "0", *flags), "rank r=0")
    one_line_error(run("finetune", "sft", "--data", good, "--lora-targets", '["qkv"]', *flags),
                   "'qkv' matches no linear module")
    one_line_error(run("finetune", "dpo", "--config", "nope", *flags), "'nope' not found")
    one_line_error(run("lora", "merge", str(base), str(tmp_path), str(tmp_path / "m")), "not a PEFT adapter")


@pytest.mark.slow
def test_quick_demo_runs_end_to_end(tmp_path):
    """`llmkit finetune demo --quick` on the packaged SmolLM2: four stages, a table, a PNG."""
    proc = run("finetune", "demo", "--quick", "--out", str(tmp_path / "demo"), timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert [r["stage"] for r in rows] == ["base", "LoRA-SFT", "DPO", "GRPO"]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    assert (tmp_path / "demo" / "accuracy.png").stat().st_size > 1000
    assert "| GRPO |" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_torchrun_two_processes_equal_one(base, tmp_path, method):
    """LoRA SFT / DPO under torchrun (2 CPU ranks, gloo, batch 2 each) == one process with batch 4."""
    import socket

    from safetensors.torch import load_file

    # equal lengths: each rank's token-mean loss is the global one
    recs = [{"conversations": [{"from": "human", "value": f"{i}+1?"}, {"from": "gpt", "value": str(i + 1)}]}
            if method == "sft" else {"prompt": f"{i}+1?", "chosen": str(i + 1), "rejected": str(i + 2)}
            for i in range(10, 30)]
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in recs))
    common = ["finetune", method, "--config", f"{method}-lora", "--init-from", str(base), "--data", str(data),
              "--max-steps", "3", "--eval-size", "4", "--max-len", "64", "--progress", "false", "--device", "cpu",
              "--lora-dropout", "0", "--log-every", "1"]
    one = run(*common, "--out-dir", str(tmp_path / "one"), "--batch-size", "4")
    assert one.returncode == 0, one.stderr[-3000:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                          f"--master_port={port}", "-m", "llmkit", *common, "--out-dir", str(tmp_path / "two"),
                          "--batch-size", "2"], capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, two.stderr[-3000:]

    def losses(d):
        return [r["loss"] for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines()) if "loss" in r]

    assert len(losses(tmp_path / "one")) == 3
    torch.testing.assert_close(torch.tensor(losses(tmp_path / "two")), torch.tensor(losses(tmp_path / "one")),
                               rtol=1e-4, atol=1e-5)
    a = load_file(tmp_path / "one" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "two" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)

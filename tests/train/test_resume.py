"""Exact resume: N steps + resume + N steps == 2N steps straight."""

import json

import pytest
import torch

from llmkit.train.config import TrainConfig, load_train_config
from llmkit.train.loop import pretrain
from llmkit.train.state import latest_checkpoint


class RandomTokens:
    """A stand-in loader with the TokenLoader interface: deterministic batches and a cursor."""

    bytes_per_token = 3.0

    def __init__(self, batch, seq, vocab, seed=0, shuffle=True):
        self.batch, self.seq, self.vocab, self.seed, self.pos = batch, seq, vocab, seed, 0

    def __iter__(self):
        while True:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.pos)
            self.pos += 1
            data = torch.randint(0, self.vocab, (self.batch, self.seq + 1), generator=g)
            yield data[:, :-1], data[:, 1:]

    def state_dict(self):
        return {"pos": self.pos}

    def load_state_dict(self, state):
        self.pos = state["pos"]


def _cfg(out, steps, **kw):
    base = dict(model="tiny-llama", model_overrides={"vocab_size": 97, "n_layer": 2, "d_model": 32, "n_head": 2,
                                                      "n_kv_head": 1, "max_seq_len": 64, "dropout": 0.1},
                out_dir=str(out), batch_size=4, seq_len=16, max_steps=steps, warmup=2, lr=1e-2,
                eval_every=3, eval_batches=2, ckpt_every=3, log_every=1, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def _loaders(r, w):
    return RandomTokens(4, 16, 97), (lambda: RandomTokens(4, 16, 97, seed=9))


def _weights(out):
    from llmkit.core.checkpoint import load_checkpoint

    return load_checkpoint(latest_checkpoint(out)).tensors


def test_resume_is_exact(tmp_path):
    straight = pretrain(_cfg(tmp_path / "a", 8, max_steps=8), _loaders)
    first = pretrain(_cfg(tmp_path / "b", 8, max_steps=8, max_time=0.0), _loaders)  # stops after step 1
    assert first.stopped == "max_time" and first.step == 1
    assert pretrain(_cfg(tmp_path / "b", 8, stop_after=4), _loaders).stopped == "stop_after"  # resume 1 -> 4
    resumed = pretrain(_cfg(tmp_path / "b", 8, max_steps=8), _loaders)  # resume 4 -> 8
    assert resumed.step == straight.step == 8
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    la = [r["loss"] for r in map(json.loads, (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    lb = [r["loss"] for r in map(json.loads, (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert la == lb


def test_checkpoints_keep_last_and_plot(tmp_path):
    res = pretrain(_cfg(tmp_path, 9, keep_last=2), _loaders)
    names = sorted(p.name for p in tmp_path.glob("ckpt-*"))
    assert names == ["ckpt-000006", "ckpt-000009"] and (tmp_path / "latest").read_text().strip() == "ckpt-000009"
    assert (tmp_path / "loss.png").stat().st_size > 1000 and res.val_loss is not None and res.val_bpb is not None
    meta = json.loads((tmp_path / "ckpt-000009" / "meta.json").read_text())
    assert meta["stage"] == "pretrain" and meta["step"] == 9 and meta["data_position"] == {"pos": 9}


def test_failed_save_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    pretrain(_cfg(tmp_path, 3), _loaders)
    import llmkit.train.state as state

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state.torch, "save", boom)
    with pytest.raises(Exception):
        pretrain(_cfg(tmp_path, 6), _loaders)
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path).name == "ckpt-000003"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert pretrain(_cfg(tmp_path, 6), _loaders).step == 6


def test_yaml_config_and_overrides(tmp_path):
    cfg = load_train_config("tiny", ["max_steps=5", "model.n_layer=1", f"out_dir={tmp_path}"])
    assert cfg.max_steps == 5 and cfg.model_overrides["n_layer"] == 1 and cfg.model_overrides["d_model"] == 128
    from llmkit.core.errors import ConfigError

    with pytest.raises(ConfigError, match="max_stepz"):
        load_train_config("tiny", ["max_stepz=5"])
    with pytest.raises(ConfigError, match="not found"):
        load_train_config("nope")

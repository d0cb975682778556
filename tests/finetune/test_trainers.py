"""SFT / DPO / ORPO / KTO on the shared loop with a tiny model: learning, metrics, reference, exact resume."""

import json
import random

import pytest
import torch

from llmkit.core.checkpoint import load_checkpoint
from llmkit.formats.loader import load_model, save_model
from llmkit.train.finetune import build_policy, finetune
from llmkit.train.ft_config import FinetuneConfig, load_finetune_config
from llmkit.train.state import latest_checkpoint

from .conftest import tiny_model


@pytest.fixture(scope="module")
def base(tmp_path_factory, smol_tok):
    path = tmp_path_factory.mktemp("base") / "tiny"
    save_model(path, tiny_model(smol_tok.vocab_size), smol_tok, {"stage": "test"})
    return path


def _data(tmp_path):
    rng = random.Random(0)
    sft, pref, kto = [], [], []
    for _ in range(24):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        q, good, bad = f"{a}+{b}=", str(a + b), str(a + b + 1)
        sft.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": good}]})
        pref.append({"prompt": q, "chosen": good, "rejected": bad})
        kto += [{"prompt": q, "completion": good, "label": True}, {"prompt": q, "completion": bad, "label": False}]
    for name, recs in (("sft", sft), ("pref", pref), ("kto", kto)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return tmp_path


def _cfg(base, tmp_path, method, data, **kw):
    fields = dict(method=method, init_from=str(base), data=str(tmp_path / data), eval_size=4, out_dir=str(tmp_path /
                  f"run-{method}-{kw.pop('tag', 'a')}"), max_steps=6, batch_size=4, lr=5e-3, warmup=1,
                  eval_every=3, ckpt_every=3, log_every=1, progress=False, max_len=64, lora_r=4, lora_alpha=8,
                  device="cpu")
    fields.update(kw)
    return FinetuneConfig(**fields)


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_sft_lora_learns_and_exports(base, tmp_path):
    d = _data(tmp_path)
    res = finetune(_cfg(base, d, "sft", "sft.jsonl", max_steps=12, eval_every=12))
    recs = _records(res.out_dir)
    losses = [r["loss"] for r in recs if "loss" in r]
    assert losses[-1] < losses[0]
    assert "val_loss" in res.metrics and res.stopped == "max_steps"
    ckpt = load_checkpoint(latest_checkpoint(res.out_dir))
    assert ckpt.tensors and all("lora_" in k for k in ckpt.tensors)  # LoRA checkpoints hold only the adapters
    assert (res.out_dir / "adapter" / "adapter_model.safetensors").is_file()
    merged = load_model(res.out_dir / "final", device="cpu")
    assert merged.meta["stage"] == "sft" and not any("lora" in n for n, _ in merged.model.named_parameters())


@pytest.mark.parametrize("method, data, extra", [
    ("sft", "sft.jsonl", {}),
    ("dpo", "pref.jsonl", {}),
    ("sft", "sft.jsonl", {"adapter": "qlora"}),
    pytest.param("dpo", "pref.jsonl", {"adapter": "full", "lr": 1e-3}, marks=pytest.mark.slow),
    pytest.param("kto", "kto.jsonl", {}, marks=pytest.mark.slow),
])
def test_interrupted_training_resumes_exactly(base, tmp_path, method, data, extra):
    d = _data(tmp_path)
    straight = finetune(_cfg(base, d, method, data, tag="straight", **extra))
    first = finetune(_cfg(base, d, method, data, tag="resumed", stop_after=3, **extra))
    assert first.stopped == "stop_after" and first.step == 3
    resumed = finetune(_cfg(base, d, method, data, tag="resumed", **extra))
    assert resumed.step == straight.step == 6
    a = load_checkpoint(latest_checkpoint(straight.out_dir)).tensors
    b = load_checkpoint(latest_checkpoint(resumed.out_dir)).tensors
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    la = [r["loss"] for r in _records(straight.out_dir) if "loss" in r]
    lb = [r["loss"] for r in _records(resumed.out_dir) if "loss" in r]
    assert la == lb


def test_qlora_trains_adapters_on_an_nf4_base(base, tmp_path):
    """QLoRA: every adapted projection's frozen base is NF4; the merged model = dequantized base + (alpha/r) B A."""
    from llmkit.model.lora import apply_lora, LoRAConfig, load_lora_state_dict, lora_modules
    from llmkit.model.qlinear import NF4Linear
    from llmkit.quantize.apply import nf4_base

    d = _data(tmp_path)
    cfg = _cfg(base, d, "sft", "sft.jsonl", adapter="qlora", max_steps=12, eval_every=12)
    policy = build_policy(cfg)
    wrapped = list(lora_modules(policy.model))
    assert wrapped and all(isinstance(m.base, NF4Linear) for _, m in wrapped)
    assert all(not p.requires_grad or "lora_" in n for n, p in policy.model.named_parameters())
    res = finetune(cfg)
    losses = [r["loss"] for r in _records(res.out_dir) if "loss" in r]
    assert losses[-1] < losses[0]
    adapters = load_checkpoint(latest_checkpoint(res.out_dir)).tensors
    assert adapters and all("lora_" in k for k in adapters)
    # rebuild the trained model by hand: the NF4 base plus the saved adapters
    ref = load_model(base, device="cpu").model.eval()
    apply_lora(ref, LoRAConfig(cfg.lora_r, cfg.lora_alpha, 0.0, tuple(cfg.lora_targets)))
    nf4_base(ref, [f"{n}.base" for n, _ in lora_modules(ref)], cfg.qlora_block)
    load_lora_state_dict(ref, adapters)
    merged = load_model(res.out_dir / "final", device="cpu").model.eval()
    ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(merged(ids), ref(ids), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("tie, targets", [(True, ("all-linear",)), (False, ("wq", "w_down", "lm_head"))])
def test_qlora_base_packed_on_load_equals_packing_after_a_full_load(smol_tok, tmp_path, tie, targets):
    """build_policy packs the base to NF4 while it loads; the oracle loads in fp32, wraps, then packs
    (the way it was built before). Same tensors, and the same loss and adapter gradients on a batch:
    QLoRA's losses for a seed do not depend on how the base was loaded."""
    from llmkit.model.lora import LoRAConfig, apply_lora, lora_modules
    from llmkit.quantize.apply import nf4_base
    from llmkit.train.losses import lm_loss

    path = tmp_path / "base"
    save_model(path, tiny_model(smol_tok.vocab_size, tie=tie), smol_tok, {"stage": "test"})
    cfg = _cfg(path, _data(tmp_path), "sft", "sft.jsonl", adapter="qlora", lora_targets=targets)
    ours = build_policy(cfg).model
    ref = load_model(path, device="cpu", dtype="float32").model
    apply_lora(ref, LoRAConfig(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, targets, init_seed=cfg.seed))
    nf4_base(ref, [f"{n}.base" for n, _ in lora_modules(ref)], cfg.qlora_block)
    ref.train()
    a, b = ours.state_dict(), ref.state_dict()
    assert a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
    x = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    losses = []
    for m in (ours, ref):
        loss = lm_loss(m(x[:, :-1]), x[:, 1:])
        loss.backward()
        losses.append(loss.detach())
    assert torch.equal(losses[0], losses[1])
    grads = [{n: p.grad for n, p in m.named_parameters() if p.requires_grad} for m in (ours, ref)]
    assert grads[0].keys() == grads[1].keys() and all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0])


def test_dpo_starts_at_log2_and_logs_reward_metrics(base, tmp_path):
    d = _data(tmp_path)
    res = finetune(_cfg(base, d, "dpo", "pref.jsonl", max_steps=8, beta=0.5))
    recs = [r for r in _records(res.out_dir) if "loss" in r]
    assert recs[0]["loss"] == pytest.approx(0.693147, abs=1e-4)  # fresh adapter: policy == reference
    assert recs[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-5)
    assert recs[-1]["rewards/margins"] > 0 and recs[-1]["loss"] < recs[0]["loss"]
    for key in ("rewards/chosen", "rewards/rejected", "rewards/accuracy"):
        assert key in recs[-1] and key in res.metrics


@pytest.mark.parametrize("loss_type", ["ipo", "hinge"])
def test_dpo_variants_train(base, tmp_path, loss_type):
    d = _data(tmp_path)
    res = finetune(_cfg(base, d, "dpo", "pref.jsonl", max_steps=6, loss_type=loss_type, tag=loss_type))
    recs = [r for r in _records(res.out_dir) if "loss" in r]
    assert recs[-1]["rewards/margins"] > 0


def test_orpo_needs_no_reference_and_improves_margin(base, tmp_path):
    d = _data(tmp_path)
    res = finetune(_cfg(base, d, "orpo", "pref.jsonl", max_steps=10, beta=2.0))
    recs = [r for r in _records(res.out_dir) if "loss" in r]
    assert recs[-1]["loss"] < recs[0]["loss"] and recs[-1]["nll"] < recs[0]["nll"]
    assert "log_odds" in recs[-1] and "rewards/margins" in res.metrics


def test_reference_is_the_base_with_adapters_off(base, tmp_path):
    cfg = _cfg(base, tmp_path, "dpo", "pref.jsonl")
    policy = build_policy(cfg, need_reference=True)
    with torch.no_grad():
        for _, p in policy.model.named_parameters():
            if p.requires_grad:
                p.add_(0.05)
    idx = torch.tensor([[1, 2, 3, 4]])
    plain = load_model(base, device="cpu").model
    with torch.no_grad(), policy.reference() as ref:
        torch.testing.assert_close(ref(idx), plain(idx))
    with torch.no_grad():
        assert not torch.allclose(policy.model(idx), plain(idx))


def test_config_errors(base):
    from llmkit.core.errors import ConfigError
    from llmkit.model.lora import AdapterError

    with pytest.raises(ConfigError, match="'ppo'"):
        FinetuneConfig(method="ppo")
    with pytest.raises(ConfigError, match="unknown FinetuneConfig key"):
        load_finetune_config(None, ["lora_rank=4"])
    with pytest.raises(AdapterError, match="rank r=0"):
        build_policy(FinetuneConfig(init_from=str(base), lora_r=0))


def test_pack_rows_places_every_example_once_within_max_len():
    from llmkit.data.batching import IGNORE, pack_rows

    rng = random.Random(1)
    rows = []
    for n in (30, 5, 17, 9, 22, 3, 12):
        xs = [rng.randrange(100) for _ in range(n)]
        rows.append((xs, [t if rng.random() < 0.5 else IGNORE for t in xs]))
    x, y, seg = pack_rows(rows, max_len=32, pad_id=0)
    assert x.shape[1] <= 32 and x.shape[0] < len(rows)
    got = sorted((tuple(x[b][seg[b] == s].tolist()), tuple(y[b][seg[b] == s].tolist()))
                 for b in range(x.shape[0]) for s in seg[b].unique().tolist() if s)
    assert got == sorted((tuple(a), tuple(b)) for a, b in rows)
    assert (y[seg == 0] == IGNORE).all()
    assert int((seg > 0).sum()) == sum(len(r[0]) for r in rows)  # every real token once, the rest padding
    with pytest.raises(Exception, match="does not fit"):
        pack_rows(rows, max_len=20, pad_id=0)


def test_packed_sft_loss_equals_padded_and_trains(base, tmp_path, smol_tok):
    from llmkit.data.batching import collate_sft, collate_sft_packed
    from llmkit.train.losses import lm_loss

    model = load_model(base, device="cpu").model
    batch = [([5, 6, 7, 8, 9], [0, 0, 1, 1, 1]), ([10, 11, 12], [0, 1, 1]), ([13, 14, 15, 16], [0, 0, 0, 1])]
    x, y = collate_sft(batch, 0)
    px, py, seg = collate_sft_packed(batch, 0, 16)
    assert px.shape[0] == 1  # all three in one row
    with torch.no_grad():
        assert float(lm_loss(model(px, segments=seg), py)) == pytest.approx(float(lm_loss(model(x), y)), rel=1e-5)
    d = _data(tmp_path)
    res = finetune(_cfg(base, d, "sft", "sft.jsonl", packing=True, tag="packed"))
    assert res.stopped == "max_steps" and "val_loss" in res.metrics
    from llmkit.core.errors import ConfigError

    with pytest.raises(ConfigError, match="packing is for sft"):
        FinetuneConfig(method="dpo", packing=True)


def test_rpo_adds_the_chosen_nll_to_dpo(base, tmp_path):
    d = _data(tmp_path)
    plain = [r for r in _records(finetune(_cfg(base, d, "dpo", "pref.jsonl", max_steps=1, tag="p")).out_dir)
             if "loss" in r][0]
    rpo = [r for r in _records(finetune(_cfg(base, d, "dpo", "pref.jsonl", max_steps=1, rpo_alpha=0.5,
                                             tag="r")).out_dir) if "loss" in r][0]
    assert "nll" not in plain and rpo["nll"] > 0  # the first step sees the same batch and weights
    assert rpo["loss"] == pytest.approx(plain["loss"] + 0.5 * rpo["nll"], rel=1e-5)

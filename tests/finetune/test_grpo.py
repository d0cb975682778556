"""GRPO: reward callables, group sampling through the engine, the update direction, exact resume."""

import json

import pytest
import torch

from llmkit.core.checkpoint import load_checkpoint
from llmkit.core.errors import ConfigError
from llmkit.data.chat_data import template_for
from llmkit.formats.loader import save_model
from llmkit.train.finetune import build_policy
from llmkit.train.ft_config import FinetuneConfig
from llmkit.train.grpo import (Groups, completion_batch, dynamic_batch, grpo, grpo_objective, informative,
                               load_prompts, sample_groups, score)
from llmkit.train.losses import IGNORE, group_advantages, token_logprobs
from llmkit.train.rewards import exact_answer, format_regex, json_schema, reward_fns
from llmkit.train.state import latest_checkpoint

from .conftest import tiny_model


def test_reward_callables():
    assert exact_answer(" 936\n", {"answer": 936}) == 1.0 and exact_answer("936.", {"answer": "936"}) == 0.0
    r = format_regex(r"\d+")
    assert r("936", {}) == 1.0 and r("936 apples", {}) == 0.0
    assert r("abc", {"pattern": "[a-c]+"}) == 1.0  # a per-example pattern wins
    j = json_schema({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})
    assert j('{"a": 1}', {}) == 1.0 and j('{"a": "x"}', {}) == 0.0 and j("not json", {}) == 0.0
    with pytest.raises(ConfigError, match="unknown reward"):
        reward_fns(["exact", "vibes"])


@pytest.fixture(scope="module")
def setup(tmp_path_factory, smol_tok):
    d = tmp_path_factory.mktemp("grpo")
    save_model(d / "base", tiny_model(smol_tok.vocab_size, seed=3), smol_tok, {"stage": "test"})
    recs = [{"prompt": f"Say {i}", "answer": str(i)} for i in range(12)]
    (d / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return d


def _cfg(d, out, **kw):
    base = dict(method="grpo", init_from=str(d / "base"), data=str(d / "prompts.jsonl"), eval_size=2,
                out_dir=str(out), max_steps=4, batch_size=2, group_size=4, max_new_tokens=6, lr=1e-2, warmup=1,
                eval_every=4, ckpt_every=2, log_every=1, progress=False, max_len=64, lora_r=4, lora_alpha=8,
                device="cpu", kl_beta=0.1)
    base.update(kw)
    return FinetuneConfig(**base)


def distinct_chars(completion, example):
    return len(set(completion)) / 10  # dense: random replies differ, so groups have signal


def test_sampling_is_seeded_and_rows_end_with_the_turn_token(setup, tmp_path):
    cfg = _cfg(setup, tmp_path / "x")
    policy = build_policy(cfg, need_reference=True)
    prompts = [p for p, _ in load_prompts(cfg.data, policy.tokenizer, template_for(policy.tokenizer), 64)[:2]]
    a = sample_groups(policy, prompts, cfg, seed=5)
    b = sample_groups(policy, prompts, cfg, seed=5)
    assert a[2] == b[2] and len(a[2]) == 8
    assert len(set(map(tuple, a[2][:4]))) > 1  # a group holds different samples
    x, y = completion_batch(a[1], a[2], 0)
    for i in range(8):
        targets = [int(t) for t in y[i] if t != IGNORE]
        assert targets == a[2][i]  # loss only on the sampled completion tokens


def test_one_update_raises_advantage_weighted_logprob(setup, tmp_path):
    """A small step on the GRPO loss raises sum_i A_i · mean_t log p(token) on the very samples it drew."""
    cfg = _cfg(setup, tmp_path / "y", kl_beta=0.0)
    policy = build_policy(cfg, need_reference=True)
    data = load_prompts(cfg.data, policy.tokenizer, template_for(policy.tokenizer), 64)[:2]
    torch.manual_seed(0)
    seed = int(torch.randint(0, 2**31 - 1, (1,)))  # the seed the objective will draw after the same reseed
    texts, flat, rows = sample_groups(policy, [p for p, _ in data], cfg, seed)
    adv = group_advantages(score(texts, [{}] * 8, [distinct_chars]), cfg.group_size)
    assert adv.abs().sum() > 0
    x, y = completion_batch(flat, rows, 0)

    def objective_value():
        with torch.no_grad():
            lp = token_logprobs(policy.model(x), y)
            return float((lp.sum(-1) / (y != IGNORE).sum(-1) * adv).mean())

    before = objective_value()
    torch.manual_seed(0)
    loss, metrics = grpo_objective(cfg, policy, [distinct_chars], None).loss(policy.model, data)
    assert abs(loss.item()) < 1e-5  # ratio 1, no KL: -mean(A) = 0, yet the gradient is -∇ mean(A · mean_t logp)
    loss.backward()
    with torch.no_grad():
        for p in policy.model.parameters():
            if p.grad is not None:
                p -= 1e-3 * p.grad
    assert objective_value() > before
    assert metrics["clip_frac"] == 0.0 and metrics["reward"] == pytest.approx(float(
        score(texts, [{}] * 8, [distinct_chars]).mean()))


def test_grpo_runs_logs_and_resumes_exactly(setup, tmp_path):
    straight = grpo(_cfg(setup, tmp_path / "a"), rewards=[distinct_chars])
    recs = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if "loss" in r]
    assert all(k in train[-1] for k in ("reward", "kl", "clip_frac", "completion_len"))
    assert "val_reward" in straight.metrics
    grpo(_cfg(setup, tmp_path / "b", stop_after=2), rewards=[distinct_chars])
    resumed = grpo(_cfg(setup, tmp_path / "b"), rewards=[distinct_chars])
    assert resumed.step == 4
    a = load_checkpoint(latest_checkpoint(tmp_path / "a")).tensors
    b = load_checkpoint(latest_checkpoint(tmp_path / "b")).tensors
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _groups(names: list[str], rewards: list[float]) -> Groups:
    """Fake groups: prompt i is [i]-ish, named by its example; rewards are per sample."""
    g = len(rewards) // len(names)
    return Groups([[i] for i in range(len(names))], [{"name": n} for n in names],
                  [f"{n}{j}" for n in names for j in range(g)], [[j] for _ in names for j in range(g)],
                  torch.tensor(rewards))


def test_informative_groups_are_those_whose_rewards_differ():
    assert informative(torch.tensor([1., 1., 0., 1., 0., 0., 0.5, 0.5]), 2) == [1]
    assert informative(torch.tensor([0., 1., 1., 1.]), 4) == [0]
    assert informative(torch.tensor([1., 1., 1., 1.]), 2) == []


def test_dynamic_batch_refills_with_informative_groups_in_order():
    first = _groups(["a", "b", "c"], [1, 1, 0, 1, 0, 0])  # only b has signal
    draws = iter([_groups(["d", "e", "f"], [0, 0, 1, 0, 1, 1]), _groups(["g", "h", "i"], [0, 1, 0, 1, 1, 0])])
    asked = []

    def draw(n):
        asked.append(n)
        return next(draws)

    batch, drawn = dynamic_batch(first, draw, group=2, max_draws=6)
    assert [e["name"] for e in batch.examples] == ["b", "e", "g"]  # full again; "h" is cut, the batch keeps B
    assert drawn == 6 and asked == [3, 3]
    assert batch.texts == ["b0", "b1", "e0", "e1", "g0", "g1"] and batch.rewards.tolist() == [0, 1, 1, 0, 0, 1]
    assert batch.rows == [[0], [1]] * 3


def test_dynamic_batch_stops_at_the_budget_and_keeps_first_if_nothing_differs():
    first = _groups(["a", "b"], [1, 1, 0, 0])
    batch, drawn = dynamic_batch(first, lambda n: _groups(["x"] * n, [1.0] * (2 * n)), group=2, max_draws=3)
    assert drawn == 3 and batch is first  # n = 2 then 1: never past the budget
    partial, drawn = dynamic_batch(first, lambda n: _groups(["y"] + ["z"] * (n - 1), [0., 1.] + [1.] * (2 * n - 2)),
                                   group=2, max_draws=1)
    assert drawn == 1 and [e["name"] for e in partial.examples] == ["y"]  # smaller than B when the budget ends


def test_dynamic_sampling_config_is_validated(setup, tmp_path):
    with pytest.raises(ConfigError, match="dynamic_sampling_draws"):
        _cfg(setup, tmp_path, dynamic_sampling=True, dynamic_sampling_draws=0)
    with pytest.raises(ConfigError, match="method 'sft'"):
        FinetuneConfig(method="sft", dynamic_sampling=True)


def odd_length(completion, example):
    return float(len(completion) % 2)  # binary: some groups agree everywhere, so there is something to drop


def test_grpo_with_dynamic_sampling_logs_draws_and_resumes_exactly(setup, tmp_path):
    kw = dict(dynamic_sampling=True, dynamic_sampling_draws=4, group_size=2)
    grpo(_cfg(setup, tmp_path / "a", **kw), rewards=[odd_length])
    recs = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if "loss" in r]
    assert all("extra_prompts" in r and r["groups"] <= 2 for r in train)
    grpo(_cfg(setup, tmp_path / "b", stop_after=2, **kw), rewards=[odd_length])
    grpo(_cfg(setup, tmp_path / "b", **kw), rewards=[odd_length])
    a = load_checkpoint(latest_checkpoint(tmp_path / "a")).tensors
    b = load_checkpoint(latest_checkpoint(tmp_path / "b")).tensors
    for k in a:
        assert torch.equal(a[k], b[k]), k

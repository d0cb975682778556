"""GRPO with verifiable rewards, on the shared loop.

Per micro-batch of B prompts:
  1. sample G completions per prompt through the generation engine (the policy, no grad);
  2. score each with the reward callables (summed) -> (B·G,) rewards;
  3. advantages = rewards normalised within each prompt's group (no value network);
     with ``dynamic_sampling`` (DAPO), groups whose rewards are all equal are dropped and
     more prompts are drawn, up to ``dynamic_sampling_draws``, to refill the batch;
  4. loss = clipped policy-gradient objective + β·KL(π‖π_ref) (k3), over completion tokens.
With one optimisation pass per sample batch the ratio is 1 and the clip only
guards the gradient's scale; the reference is the base (adapters off) or a frozen copy.

Prompt records are JSONL ``{"prompt": str | messages, "answer": ..., ...}``; the
whole record is handed to every reward as ``example``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from llmkit.generate import Engine, SamplingParams
from llmkit.generate.engine import END_OF_TURN
from llmkit.train.finetune import Policy, build_policy, run_objective, take
from llmkit.train.ft_config import FinetuneConfig
from llmkit.train.loop import Objective, TrainResult, setup_run
from llmkit.train.losses import IGNORE, group_advantages, grpo_loss, token_logprobs
from llmkit.train.rewards import Reward, reward_fns


def load_prompts(path: str | Path, tokenizer, template, max_len: int) -> list[tuple[list[int], dict]]:
    """[(prompt ids with the generation prompt, record)] for the prompts that fit max_len."""
    from llmkit.data.chat_data import load_prompts as read
    from llmkit.data.errors import DataError

    out = [(template.render(tokenizer, msgs, add_generation_prompt=True)[0], rec) for msgs, rec in read(path)]
    out = [(ids, rec) for ids, rec in out if len(ids) < max_len]
    if not out:
        raise DataError(f"no prompt in {str(path)!r} fits max_len={max_len}", "raise max_len")
    return out


def end_of_turn_id(tokenizer) -> int | None:
    """The token a finished reply ends with (kept in the trained sequence so the model learns to stop)."""
    for s in END_OF_TURN:
        if s in tokenizer.special_tokens:
            return tokenizer.special_tokens[s]
    return tokenizer.eos_id


def score(completions: list[str], examples: list[dict], rewards: list[Reward]) -> torch.Tensor:
    return torch.tensor([sum(r(c, ex) for r in rewards) for c, ex in zip(completions, examples)],
                        dtype=torch.float32)


def sample_groups(policy: Policy, prompts: list[list[int]], cfg: FinetuneConfig, seed: int):
    """G completions per prompt -> (texts, token rows); rows keep the end-of-turn token when the reply stopped."""
    engine = Engine(policy.model, policy.tokenizer)
    eot = end_of_turn_id(policy.tokenizer)
    flat = [p for p in prompts for _ in range(cfg.group_size)]
    params = [SamplingParams(max_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=1.0, seed=seed + i)
              for i in range(len(flat))]
    outs = engine.generate(flat, params)
    rows = [o.token_ids + ([eot] if o.finish_reason == "stop" and eot is not None else []) for o in outs]
    return [o.text for o in outs], flat, rows


@dataclass
class Groups:
    """B prompts' sampled groups: per prompt `prompts`, `examples`; per sample (B·G) `texts`, `rows`, `rewards`."""

    prompts: list[list[int]]
    examples: list[dict]
    texts: list[str]
    rows: list[list[int]]
    rewards: torch.Tensor  # (B·G,)

    def take(self, keep: list[int], group: int) -> "Groups":
        """The groups of the prompts at indices `keep`, in that order."""
        samples = [i * group + j for i in keep for j in range(group)]
        return Groups([self.prompts[i] for i in keep], [self.examples[i] for i in keep],
                      [self.texts[k] for k in samples], [self.rows[k] for k in samples],
                      self.rewards[samples] if samples else self.rewards[:0])

    def __add__(self, other: "Groups") -> "Groups":
        return Groups(self.prompts + other.prompts, self.examples + other.examples, self.texts + other.texts,
                      self.rows + other.rows, torch.cat([self.rewards, other.rewards]))


def informative(rewards: torch.Tensor, group: int) -> list[int]:
    """Indices of the groups whose rewards are not all equal: only they get a non-zero advantage.

    informative(torch.tensor([1., 1., 0., 1., 0., 0.]), 2) == [1]
    """
    g = rewards.view(-1, group)  # (B, G)
    return [i for i, differ in enumerate((g != g[:, :1]).any(-1).tolist()) if differ]


def dynamic_batch(first: Groups, draw: Callable[[int], Groups], group: int, max_draws: int) -> tuple[Groups, int]:
    """DAPO dynamic sampling: keep `first`'s informative groups, then draw(n) n more prompts' groups until
    the batch is full again or `max_draws` extra prompts were spent -> (batch, prompts drawn).

    The batch may end up smaller; if no group was informative the step keeps `first` (only the KL term acts).
    """
    want = len(first.prompts)
    kept, drawn = first.take(informative(first.rewards, group), group), 0
    while len(kept.prompts) < want and drawn < max_draws:
        n = min(want, max_draws - drawn)
        more = draw(n)
        drawn += n
        kept = kept + more.take(informative(more.rewards, group), group)
    if not kept.prompts:
        return first, drawn
    return kept.take(list(range(min(want, len(kept.prompts)))), group), drawn


def completion_batch(prompts: list[list[int]], completions: list[list[int]], pad_id: int):
    """x (N, T) = prompt + completion (right-padded); y (N, T) = next tokens on completion positions only."""
    from llmkit.data.batching import pad_rows, shift_targets

    return pad_rows([shift_targets(p + c, [0] * len(p) + [1] * len(c)) for p, c in zip(prompts, completions)],
                    pad_id)


def grpo_objective(cfg: FinetuneConfig, policy: Policy, rewards: list[Reward],
                   eval_fn: Callable[[torch.nn.Module], dict] | None,
                   pool: list[tuple[list[int], dict]] | None = None) -> Objective:
    """`pool`: the training prompts dynamic sampling draws extra prompts from (required with it)."""
    assert pool or not cfg.dynamic_sampling, "dynamic sampling needs a prompt pool"
    pad = policy.tokenizer.pad_id if policy.tokenizer.pad_id is not None else 0

    def sample(prompts: list[list[int]], examples: list[dict]) -> Groups:
        seed = int(torch.randint(0, 2**31 - 1, (1,)))  # from the torch RNG the checkpoint restores: exact resume
        texts, _, rows = sample_groups(policy, prompts, cfg, seed)
        r = score(texts, [ex for ex in examples for _ in range(cfg.group_size)], rewards)
        return Groups(prompts, examples, texts, rows, r)

    def draw(n: int) -> Groups:
        picks = [pool[i] for i in torch.randint(0, len(pool), (n,)).tolist()]  # torch RNG again: resumable
        return sample([p for p, _ in picks], [ex for _, ex in picks])

    def step(m, batch):
        groups = sample([p for p, _ in batch], [ex for _, ex in batch])
        first_reward, drawn = float(groups.rewards.mean()), 0
        if cfg.dynamic_sampling:
            groups, drawn = dynamic_batch(groups, draw, cfg.group_size, cfg.dynamic_sampling_draws)
        policy.model.train()  # the engine switched it to eval
        r = groups.rewards
        adv = group_advantages(r, cfg.group_size)
        flat = [p for p in groups.prompts for _ in range(cfg.group_size)]
        x, y = completion_batch(flat, groups.rows, pad)
        x, y = x.to(policy.model.tok_emb.weight.device), y.to(policy.model.tok_emb.weight.device)
        mask = y != IGNORE
        logp = token_logprobs(m(x), y)
        with torch.no_grad(), policy.reference() as ref:
            ref_logp = token_logprobs(ref(x), y)
        loss, kl, clip = grpo_loss(logp, logp.detach(), ref_logp, adv.to(logp.device), mask, cfg.clip_eps,
                                   cfg.kl_beta)
        return loss, {"reward": first_reward, "reward_std": float(r.view(-1, cfg.group_size).std(-1).mean()),
                      "kl": kl, "clip_frac": clip, "completion_len": float(mask.sum(-1).float().mean()),
                      "groups": float(len(groups.prompts)), "extra_prompts": float(drawn)}

    return Objective("grpo", step, eval_fn, tokens=lambda batch: sum(len(p) for p, _ in batch) * cfg.group_size)


@torch.no_grad()
def greedy_accuracy(model, tokenizer, prompts: list[tuple[list[int], dict]], rewards: list[Reward],
                    max_new_tokens: int, batch_size: int = 16) -> tuple[float, list[str]]:
    """Mean reward of greedy replies (1.0 = every reply passes every reward check) and the replies."""
    engine = Engine(model, tokenizer)
    texts = []
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i:i + batch_size]
        outs = engine.generate([p for p, _ in chunk], SamplingParams(max_tokens=max_new_tokens, temperature=0))
        texts += [o.text for o in outs]
    s = score(texts, [ex for _, ex in prompts], rewards)
    return float(s.mean()) / max(len(rewards), 1), texts


def grpo(cfg: FinetuneConfig, rewards: list[Reward] | None = None,
         eval_hook: Callable[[int, torch.nn.Module], None] | None = None) -> TrainResult:
    """Train with GRPO on prompt JSONL; held-out greedy reward is the eval metric."""
    from llmkit.data.batching import ExampleLoader
    from llmkit.data.chat_data import template_for

    device, rank, world, resume_from = setup_run(cfg)
    policy = build_policy(cfg, resume_from, need_reference=True, device=device)
    rewards = rewards if rewards is not None else reward_fns(cfg.rewards)
    template = template_for(policy.tokenizer, cfg.template)
    train = load_prompts(cfg.data, policy.tokenizer, template, cfg.max_len - cfg.max_new_tokens)
    held = load_prompts(cfg.eval_data, policy.tokenizer, template, cfg.max_len) if cfg.eval_data else \
        train[:cfg.eval_size]
    train = train if cfg.eval_data else train[cfg.eval_size:]
    loader = ExampleLoader(train, cfg.batch_size, list, cfg.seed, rank, world)

    def evaluate(m):
        acc, _ = greedy_accuracy(m, policy.tokenizer, list(take(iter(held), cfg.eval_batches * cfg.batch_size)),
                                 rewards, cfg.max_new_tokens)
        m.train()
        return {"val_reward": acc}

    objective = grpo_objective(cfg, policy, rewards, evaluate if held else None, pool=train)
    return run_objective(cfg, policy, objective, loader, device, rank, world, resume_from, eval_hook)


"""SFT, DPO (sigmoid / IPO / hinge), ORPO and KTO on the one training loop.

    result = finetune(load_finetune_config("dpo-lora", ["data=pairs.jsonl"]))

Each method is an ``Objective`` for ``llmkit.train.loop.fit``, so progress,
eval, atomic checkpoints, signals and exact resume are the pretraining loop's.
The policy is the base model with LoRA adapters (or all weights, ``adapter:
full``). The reference model of DPO/KTO is the same weights with the adapters
switched off under LoRA — no second copy — or a frozen copy of the base for full
fine-tuning. A LoRA checkpoint stores only the adapters (plus optimizer state);
the final model is written as a PEFT adapter and, merged, as an llmkit checkpoint.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from llmkit.core.errors import ConfigError
from llmkit.model.lora import AdapterError, LoRAConfig, adapters_disabled, apply_lora, has_lora, is_target, \
    load_lora_state_dict, lora_modules, lora_state_dict
from llmkit.train.ft_config import FinetuneConfig
from llmkit.train.loop import Objective, TrainResult, fit, setup_run
from llmkit.train.losses import dpo_loss, kto_loss, lm_loss, orpo_loss, sequence_logprobs


@dataclass
class Policy:
    model: torch.nn.Module
    tokenizer: Any
    reference: Callable[[], contextlib.AbstractContextManager]  # `with policy.reference() as ref: ref(x)`


def build_policy(cfg: FinetuneConfig, resume_from: Path | None = None, need_reference: bool = False,
                 device: torch.device | str = "cpu") -> Policy:
    """Base model (+ LoRA), weights restored from ``resume_from`` when resuming, and its reference model."""
    from llmkit.formats.loader import load_checkpoint_model, load_model

    if not cfg.init_from:
        raise ConfigError("init_from is empty", "name the base model, e.g. init_from=smollm2")
    convert = None
    if cfg.adapter in ("lora", "qlora"):
        lora = LoRAConfig(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, tuple(cfg.lora_targets), init_seed=cfg.seed)
    if cfg.adapter == "qlora":  # the frozen base under each adapter in 4-bit NF4 (double-quantized scales)
        from llmkit.quantize.apply import nf4_base, nf4_on_load

        # packed as each layer is read, into buffers of its own: the fp32 base never exists whole, and
        # no mapping of the checkpoint file (kept alive by the embedding) holds its pages for the whole run
        convert = nf4_on_load(lambda name: is_target(name, lora.targets), cfg.qlora_block)
    lm = load_model(cfg.init_from, device="cpu", dtype="float32", convert_linear=convert)
    model, frozen = lm.model, None
    if cfg.adapter in ("lora", "qlora"):
        apply_lora(model, lora)
        if cfg.adapter == "qlora":  # targets the loader does not convert (a head outside the blocks)
            nf4_base(model, [f"{name}.base" for name, _ in lora_modules(model)], cfg.qlora_block)
    elif need_reference:  # full fine-tuning: the reference is a frozen copy of the starting weights
        import copy

        frozen = copy.deepcopy(model).eval().requires_grad_(False).to(device)
    if resume_from is not None:
        _, sd, _, _ = load_checkpoint_model(resume_from)
        if has_lora(model):
            load_lora_state_dict(model, sd)
        else:
            model.load_weights(sd)
    model.train()

    @contextlib.contextmanager
    def reference():
        if frozen is not None:
            yield frozen
        else:
            with adapters_disabled(model):
                yield model

    return Policy(model, lm.tokenizer, reference)


def _no_grad_ref(policy: Policy, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), policy.reference() as ref:
        return ref(x)


def _count_tokens(batch) -> int:
    """Tokens the forward pass processes (prompt and answer, padding included): the throughput figure."""
    return int(batch[0].numel())


# ---- objectives ----------------------------------------------------------------------------------
def sft_objective(cfg: FinetuneConfig, policy: Policy, eval_set) -> Objective:
    def step(m, batch):
        x, y, *seg = batch  # a third tensor: the segment ids of packed rows
        return lm_loss(m(x, segments=seg[0]) if seg else m(x), y), {}

    def evaluate(m):
        losses = [float(step(m, b)[0]) for b in eval_set()]
        return {"val_loss": sum(losses) / max(len(losses), 1)} if losses else {}

    return Objective("sft", step, _no_grad_eval(evaluate) if eval_set else None, tokens=_count_tokens)


def preference_metrics(rc: torch.Tensor, rr: torch.Tensor) -> dict[str, float]:
    """The logged reward statistics of DPO-style training (TRL's names)."""
    return {"rewards/chosen": float(rc.mean()), "rewards/rejected": float(rr.mean()),
            "rewards/margins": float((rc - rr).mean()), "rewards/accuracy": float((rc > rr).float().mean())}


def dpo_step(cfg: FinetuneConfig, policy: Policy, m, batch):
    x, y = batch  # (2B, T): chosen rows then rejected rows
    B = x.shape[0] // 2
    average = cfg.loss_type == "ipo"  # IPO's margin is per token (as TRL computes it)
    logits = m(x)
    lp = sequence_logprobs(logits, y, average=average)
    ref = sequence_logprobs(_no_grad_ref(policy, x), y, average=average)
    loss, rc, rr = dpo_loss(lp[:B], lp[B:], ref[:B], ref[B:], cfg.beta, cfg.loss_type, cfg.label_smoothing)
    metrics = preference_metrics(rc, rr)
    if cfg.rpo_alpha:  # RPO (Pang et al. 2024): + alpha * NLL of the chosen answers, so they do not lose mass too
        nll = lm_loss(logits[:B], y[:B])
        loss = loss + cfg.rpo_alpha * nll
        metrics["nll"] = float(nll.detach())
    return loss, metrics


def orpo_step(cfg: FinetuneConfig, policy: Policy, m, batch):
    x, y = batch
    B = x.shape[0] // 2
    logits = m(x)
    lp = sequence_logprobs(logits, y, average=True)  # ORPO's odds use the per-token mean log-prob
    nll = lm_loss(logits[:B], y[:B])
    loss, log_odds, _ = orpo_loss(lp[:B], lp[B:], nll, cfg.beta)
    metrics = preference_metrics(cfg.beta * lp[:B].detach(), cfg.beta * lp[B:].detach())
    return loss, {**metrics, "nll": float(nll.detach()), "log_odds": float(log_odds.mean())}


def kto_step(cfg: FinetuneConfig, policy: Policy, m, batch):
    x, y, desirable = batch  # rows [0, B) completions, [B, 2B) mismatched pairs for the KL reference point
    B = x.shape[0] // 2
    lp = sequence_logprobs(m(x), y)
    ref = sequence_logprobs(_no_grad_ref(policy, x), y)
    kl = (lp[B:] - ref[B:]).detach().mean()  # z0: the policy's drift on unrelated completions
    loss, rewards = kto_loss(lp[:B], ref[:B], desirable, kl, cfg.beta, cfg.desirable_weight, cfg.undesirable_weight)
    d = desirable.bool()
    metrics = {"kl": float(kl.clamp(min=0))}
    if d.any():
        metrics["rewards/chosen"] = float(rewards[d].mean())
    if (~d).any():
        metrics["rewards/rejected"] = float(rewards[~d].mean())
    return loss, metrics


def _no_grad_eval(evaluate):
    def run(m):
        was = m.training
        m.eval()
        try:
            with torch.no_grad():
                return evaluate(m)
        finally:
            m.train(was)
    return run


def pair_objective(cfg: FinetuneConfig, policy: Policy, eval_set, step_fn) -> Objective:
    def step(m, batch):
        return step_fn(cfg, policy, m, batch)

    def evaluate(m):
        sums, n = {}, 0
        for batch in eval_set():
            loss, metrics = step_fn(cfg, policy, m, batch)
            for k, v in {"val_loss": float(loss), **metrics}.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
        return {k: v / n for k, v in sums.items()} if n else {}

    return Objective(cfg.method, step, _no_grad_eval(evaluate) if eval_set else None, tokens=_count_tokens)


# ---- data ----------------------------------------------------------------------------------------
def _split(cfg: FinetuneConfig, load) -> tuple[list, list]:
    train = load(cfg.data)
    if cfg.eval_data:
        return train, load(cfg.eval_data)
    if cfg.eval_size:
        if cfg.eval_size >= len(train):
            raise ConfigError(f"eval_size={cfg.eval_size} leaves no training records (of {len(train)})",
                              "lower eval_size or pass eval_data")
        return train[cfg.eval_size:], train[:cfg.eval_size]
    return train, []


def datasets(cfg: FinetuneConfig, tokenizer) -> tuple[list, list, Callable]:
    """(train examples, eval examples, collate) for the config's method."""
    from llmkit.data import batching as B
    from llmkit.data import chat_data as C

    template = C.template_for(tokenizer, cfg.template)
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    if cfg.method == "sft":
        raw = _split(cfg, lambda p: C.load_conversations(p, cfg.format))
        enc = [C.encode_all(r, lambda m: C.encode_conversation(tokenizer, template, m, cfg.max_len),
                            "conversation") if r else [] for r in raw]
        if cfg.packing:
            return enc[0], enc[1], lambda b: B.collate_sft_packed(b, pad, cfg.max_len)
        return enc[0], enc[1], lambda b: B.collate_sft(b, pad)
    if cfg.method in ("dpo", "orpo"):
        raw = _split(cfg, C.load_preferences)

        def pair(rec):
            c = C.encode_completion(tokenizer, template, rec[0], rec[1], cfg.max_len)
            r = C.encode_completion(tokenizer, template, rec[0], rec[2], cfg.max_len)
            return (c, r) if c is not None and r is not None else None

        enc = [C.encode_all(r, pair, "preference pair") if r else [] for r in raw]
        return enc[0], enc[1], lambda b: B.collate_pairs(b, pad)
    if cfg.method == "kto":
        raw = _split(cfg, C.load_unpaired)

        def one(rec):
            c = C.encode_completion(tokenizer, template, rec[0], rec[1], cfg.max_len)
            return (c, rec[2]) if c is not None else None

        enc = [C.encode_all(r, one, "completion") if r else [] for r in raw]
        return enc[0], enc[1], lambda b: B.collate_unpaired(b, pad)
    raise ConfigError(f"method {cfg.method!r} has no offline dataset", "use llmkit.train.grpo for grpo")


# ---- the entry point -----------------------------------------------------------------------------
def finetune(cfg: FinetuneConfig, eval_hook: Callable[[int, torch.nn.Module], None] | None = None) -> TrainResult:
    """Run SFT / DPO / ORPO / KTO (or GRPO) as configured; writes checkpoints, adapter/ and merged/ to out_dir."""
    if cfg.method == "grpo":
        from llmkit.train.grpo import grpo

        return grpo(cfg, eval_hook=eval_hook)
    from llmkit.data.batching import ExampleLoader, eval_batches

    device, rank, world, resume_from = setup_run(cfg)
    policy = build_policy(cfg, resume_from, cfg.method in ("dpo", "kto"), device)
    train, held_out, collate = datasets(cfg, policy.tokenizer)
    loader = ExampleLoader(train, cfg.batch_size, collate, cfg.seed, rank, world)
    eval_set = (lambda: take(eval_batches(held_out, min(cfg.batch_size, len(held_out)), collate),
                               cfg.eval_batches)) if held_out else None
    if cfg.method == "sft":
        objective = sft_objective(cfg, policy, eval_set)
    else:
        step = {"dpo": dpo_step, "orpo": orpo_step, "kto": kto_step}[cfg.method]
        objective = pair_objective(cfg, policy, eval_set, step)
    return run_objective(cfg, policy, objective, loader, device, rank, world, resume_from, eval_hook)


def run_objective(cfg: FinetuneConfig, policy: Policy, objective: Objective, loader, device, rank, world,
                  resume_from, eval_hook=None) -> TrainResult:
    """fit() with the LoRA-aware checkpoint contents, then the final adapter / merged model."""
    if has_lora(policy.model):
        objective.save_tensors = lora_state_dict
    meta = {"parent": cfg.init_from, "adapter": cfg.adapter}
    result = fit(cfg, policy.model, objective, loader, device, rank, world, policy.tokenizer, resume_from, meta,
                 eval_hook)
    if rank == 0 and result.stopped == "max_steps":
        export_final(cfg, policy)
    return result


def export_final(cfg: FinetuneConfig, policy: Policy) -> Path:
    """out_dir/adapter (PEFT layout) and out_dir/final (merged llmkit checkpoint, loadable by every verb)."""
    from llmkit.formats.loader import save_model

    out = Path(cfg.out_dir)
    meta = {"stage": cfg.method, "parent": cfg.init_from, "adapter": cfg.adapter}
    if has_lora(policy.model):
        from llmkit.formats.peft import save_adapter
        from llmkit.model.lora import merge_and_unload

        with contextlib.suppress(AdapterError):  # PEFT layout needs HF names (Llama family); merged/ always works
            save_adapter(out / "adapter", policy.model, base=cfg.init_from)
        if not cfg.save_merged:
            return out / "adapter"
        import copy

        merged = merge_and_unload(copy.deepcopy(policy.model))
        return save_model(out / "final", merged, policy.tokenizer, meta)
    return save_model(out / "final", policy.model, policy.tokenizer, meta)


def take(it, n: int):
    """The first n items of an iterator."""
    for i, x in enumerate(it):
        if i >= n:
            return
        yield x

"""The one training loop: pretraining now, fine-tuning stages reuse it later.

Per optimizer step: set the scheduled learning rate, run `grad_accum`
micro-batches (forward, loss / grad_accum, backward), clip the gradient norm,
step, zero. Around it: eval every `eval_every` steps (val loss and bits per
byte), checkpoints every `ckpt_every` steps and on SIGINT/SIGTERM, and a
stop when `max_time` runs out. Resuming restores weights, optimizer moments,
step (hence the schedule), RNG and the exact data position, so N steps +
resume + N steps equals 2N steps straight.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from llmkit.core.errors import ConfigError
from llmkit.core.runtime import resolve_device, seed_everything
from llmkit.model import Transformer, preset
from llmkit.train import distributed as D
from llmkit.train.config import TrainConfig
from llmkit.train.losses import bits_per_byte, lm_loss
from llmkit.train.metrics import MetricsLog, plot_loss
from llmkit.train.optim import make_optimizer
from llmkit.train.schedule import lr_at
from llmkit.train.state import latest_checkpoint, load_trainer_state, rng_state, save_train_checkpoint, set_rng_state


@dataclass
class TrainResult:
    step: int
    loss: float | None
    val_loss: float | None
    val_bpb: float | None
    checkpoint: Path | None
    stopped: str  # "max_steps" | "stop_after" | "max_time" | "signal"
    seconds: float
    tokens: int
    out_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)  # the last evaluation


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint at the next step boundary."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.reason == "signal":  # a second Ctrl-C means: stop now
            raise KeyboardInterrupt
        self.reason = "signal"

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class _ValPass:
    """A fresh deterministic pass over the val split each call; knows the split's bytes per token."""

    def __init__(self, cfg: TrainConfig, rank: int, world: int):
        from llmkit.data.loader import TokenStream

        self.cfg, self.rank, self.world = cfg, rank, world
        self.bytes_per_token = TokenStream(cfg.data, "val").bytes_per_token

    def __call__(self):
        from llmkit.data.loader import val_batches

        c = self.cfg
        return val_batches(c.data, c.batch_size, c.seq_len, "val", self.rank, self.world, max_batches=c.eval_batches)


def _default_loaders(cfg: TrainConfig, rank: int, world: int):
    from llmkit.data.loader import TokenLoader

    train = TokenLoader(cfg.data, "train", cfg.batch_size, cfg.seq_len, rank=rank, world_size=world, seed=cfg.seed)
    return train, _ValPass(cfg, rank, world)


def _tokenizer_for(cfg: TrainConfig):
    path = Path(cfg.data) / "tokenizer"
    if not (path / "tokenizer.json").is_file():
        return None
    from llmkit.tokenizer import Tokenizer

    return Tokenizer.load(path)


def _build_model(cfg: TrainConfig, tokenizer, resume_from: Path | None) -> Transformer:
    from llmkit.formats.loader import load_checkpoint_model, load_model

    if resume_from is not None:
        mcfg, sd, _, _ = load_checkpoint_model(resume_from)
        return Transformer.from_state_dict(mcfg, sd).train()
    if cfg.init_from:
        return load_model(cfg.init_from, device="cpu", dtype="float32").model.train()
    mcfg = preset(cfg.model)
    if tokenizer is not None and "vocab_size" not in cfg.model_overrides:
        mcfg = mcfg.replace(vocab_size=tokenizer.vocab_size)
    mcfg = mcfg.replace(**cfg.model_overrides)
    if cfg.seq_len > mcfg.max_seq_len:
        raise ConfigError(f"seq_len={cfg.seq_len} exceeds the model's max_seq_len={mcfg.max_seq_len}",
                          "lower seq_len or set model.max_seq_len")
    return Transformer(mcfg).init_weights(seed=cfg.seed)


@dataclass
class Objective:
    """What one training stage computes; `fit` does everything around it.

    loss(model, batch) -> (scalar loss, {metric: float}) for one micro-batch;
    evaluate(raw_model) -> {metric: float}, e.g. {"val_loss": ...};
    save_tensors(raw_model) -> the tensors a checkpoint stores (default: the full state dict);
    tokens(batch) -> tokens the batch trains on (default batch_size × seq_len).
    """

    stage: str
    loss: Callable[[torch.nn.Module, Any], tuple[torch.Tensor, dict[str, float]]]
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None
    save_tensors: Callable[[torch.nn.Module], dict[str, torch.Tensor]] | None = None
    tokens: Callable[[Any], int] | None = None


def setup_run(cfg: TrainConfig) -> tuple[torch.device, int, int, Path | None]:
    """Device, rank, world size, and the checkpoint to resume from (None for a fresh run)."""
    device = resolve_device(cfg.device)
    rank, world = D.setup(device)
    device = D.local_device(device)
    seed_everything(cfg.seed)  # identical init on every rank
    return device, rank, world, latest_checkpoint(Path(cfg.out_dir)) if cfg.resume else None


def pretrain(cfg: TrainConfig, loaders: Callable[[int, int], tuple[Any, Callable[[], Any]]] | None = None,
             on_eval: Callable[[int, Transformer], None] | None = None) -> TrainResult:
    """Train a language model on prepared token shards; returns where it ended and the last metrics."""
    device, rank, world, resume_from = setup_run(cfg)
    tokenizer = _tokenizer_for(cfg)
    model = _build_model(cfg, tokenizer, resume_from).to(device)
    train_loader, val_factory = (loaders or (lambda r, w: _default_loaders(cfg, r, w)))(rank, world)
    bpt = getattr(val_factory, "bytes_per_token", None) or getattr(train_loader, "bytes_per_token", None)

    def lm_step(m, batch):
        x, y = batch
        return lm_loss(m(x), y), {}

    def val(m):
        loss = evaluate(m, val_factory, cfg.eval_batches, device)
        return {"val_loss": loss, "val_bpb": bits_per_byte(loss, bpt) if bpt else None}

    objective = Objective("pretrain", lm_step, val)
    return fit(cfg, model, objective, train_loader, device, rank, world, tokenizer, resume_from,
               {"parent": cfg.init_from}, on_eval)


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device) for b in batch)
    return batch


def fit(cfg: TrainConfig, model: Transformer, objective: Objective, train_loader: Any, device: torch.device,
        rank: int, world: int, tokenizer=None, resume_from: Path | None = None, meta: dict | None = None,
        on_eval: Callable[[int, Transformer], None] | None = None) -> TrainResult:
    """The loop: schedule, grad accumulation, clipping, eval, checkpoints, signals, exact resume.

    ``model`` already holds the weights to start from (the caller restores them on resume);
    the optimizer covers the parameters that require grad.
    """
    main = rank == 0
    out_dir = Path(cfg.out_dir)
    model = model.to(device)
    model = D.wrap(model, device, cfg.fsdp)  # FSDP shards in place: the optimizer must see the sharded params
    raw_model = model.module if hasattr(model, "module") else model
    opt = make_optimizer(raw_model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    step = 0
    if resume_from is not None:
        state = load_trainer_state(resume_from)
        D.load_optimizer(raw_model, opt, state["optimizer"], cfg.fsdp)
        train_loader.load_state_dict(state["loader"])
        set_rng_state(state["rng"])
        step = int(state["step"])
        if main:
            print(f"resuming from {resume_from} at step {step}")
    if cfg.compile:
        model = torch.compile(model)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda" and cfg.dtype != "float32"
                else torch.autocast(device.type, enabled=False))
    log = MetricsLog(out_dir, cfg.tensorboard, enabled=main)
    log.truncate_after(step)
    meta = {"stage": objective.stage, **(meta or {}), "train_config": cfg.to_dict()}
    it = iter(train_loader)
    result = TrainResult(step, None, None, None, None, "max_steps", 0.0, 0, out_dir)
    t0 = time.perf_counter()
    bar = _progress(cfg, step, main, objective.stage)

    def checkpoint(at: int) -> Path | None:
        path = None
        model_sd, opt_sd = D.full_state(raw_model, opt, cfg.fsdp)  # collective under FSDP
        if objective.save_tensors is not None:
            model_sd = objective.save_tensors(raw_model)
        if main:
            trainer = {"optimizer": opt_sd, "loader": train_loader.state_dict(), "rng": rng_state(), "step": at}
            path = save_train_checkpoint(out_dir, at, raw_model.cfg, model_sd, tokenizer, trainer,
                                         {**meta, "data_position": _jsonable(train_loader.state_dict())},
                                         cfg.keep_last)
        D.barrier()
        return path

    with _StopFlag() as stop:
        while step < cfg.max_steps:
            lr = lr_at(step, cfg.lr, cfg.warmup, cfg.max_steps, cfg.min_lr)
            for group in opt.param_groups:
                group["lr"] = lr
            model.train()
            loss_sum, sums, tokens = 0.0, {}, 0
            for micro in range(cfg.grad_accum):
                batch = _to(next(it), device)
                with D.no_sync(model, micro < cfg.grad_accum - 1), autocast:
                    loss, metrics = objective.loss(model, batch)
                    loss = loss / cfg.grad_accum
                loss.backward()
                loss_sum += float(loss.detach())
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + float(v) / cfg.grad_accum
                tokens += objective.tokens(batch) if objective.tokens else cfg.batch_size * cfg.seq_len
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            loss_val = D.mean_across_ranks(loss_sum, device)
            if not math.isfinite(loss_val):
                raise FloatingPointError(f"loss became {loss_val} at step {step}; lower lr or enable grad_clip")
            result.loss, result.step, result.tokens = loss_val, step, result.tokens + tokens * world
            elapsed = time.perf_counter() - t0
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_val:.3f}", lr=f"{lr:.2e}", tok_s=f"{result.tokens / elapsed:,.0f}")
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                log.log({"step": step, "loss": loss_val, "lr": lr, "tokens": result.tokens, "time": elapsed, **sums})
            if objective.evaluate is not None and (step % cfg.eval_every == 0 or step == cfg.max_steps):
                result.metrics = objective.evaluate(raw_model)
                result.val_loss, result.val_bpb = result.metrics.get("val_loss"), result.metrics.get("val_bpb")
                log.log({"step": step, **result.metrics})
                if bar is not None:
                    bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()
                                                           if isinstance(v, float)))
                if on_eval is not None and main:
                    on_eval(step, raw_model)
            if cfg.max_time is not None and elapsed > cfg.max_time:
                stop.reason = stop.reason or "max_time"
            if cfg.stop_after is not None and step >= cfg.stop_after and step < cfg.max_steps:
                stop.reason = stop.reason or "stop_after"
            if stop.reason or step % cfg.ckpt_every == 0 or step == cfg.max_steps:
                result.checkpoint = checkpoint(step)
            if stop.reason:
                result.stopped = stop.reason
                break
    if bar is not None:
        bar.close()
    result.seconds = time.perf_counter() - t0
    if main:
        title = f"{cfg.model} pretraining" if objective.stage == "pretrain" else objective.stage
        plot_loss(log.records(), out_dir / "loss.png", title=title)
    log.close()
    D.cleanup()
    return result


@torch.no_grad()
def evaluate(model: Transformer, val_factory: Callable[[], Any], batches: int, device: torch.device) -> float:
    """Mean val loss (nats/token) over the first `batches` batches of the val split."""
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    for i, (x, y) in enumerate(val_factory()):
        if i >= batches:
            break
        total += float(lm_loss(model(x.to(device)), y.to(device)))
        n += 1
    model.train(was_training)
    return D.mean_across_ranks(total / max(n, 1), device)


def _jsonable(obj: Any) -> Any:
    """meta.json copy of a loader state: tensors are summarised (the exact state is in trainer.pt)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else f"<tensor {tuple(obj.shape)}>"
    return obj if isinstance(obj, (str, int, float, bool)) or obj is None else repr(obj)


def _progress(cfg: TrainConfig, step: int, main: bool, stage: str = "pretrain"):
    if not (main and cfg.progress):
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.max_steps, initial=step, desc=stage, unit="step", dynamic_ncols=True)

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
from dataclasses import dataclass
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


def pretrain(cfg: TrainConfig, loaders: Callable[[int, int], tuple[Any, Callable[[], Any]]] | None = None,
             on_eval: Callable[[int, Transformer], None] | None = None) -> TrainResult:
    """Train a language model on prepared token shards; returns where it ended and the last metrics."""
    device = resolve_device(cfg.device)
    rank, world = D.setup(device)
    device = D.local_device(device)
    main = rank == 0
    out_dir = Path(cfg.out_dir)
    seed_everything(cfg.seed)  # identical init on every rank
    resume_from = latest_checkpoint(out_dir) if cfg.resume else None
    tokenizer = _tokenizer_for(cfg)
    model = _build_model(cfg, tokenizer, resume_from).to(device)
    model = D.wrap(model, device, cfg.fsdp)  # FSDP shards in place: the optimizer must see the sharded params
    raw_model = model.module if hasattr(model, "module") else model
    opt = make_optimizer(raw_model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    train_loader, val_factory = (loaders or (lambda r, w: _default_loaders(cfg, r, w)))(rank, world)
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
    bpt = getattr(val_factory, "bytes_per_token", None) or getattr(train_loader, "bytes_per_token", None)
    tokens_per_step = cfg.batch_size * cfg.seq_len * cfg.grad_accum * world
    meta = {"stage": "pretrain", "parent": cfg.init_from, "train_config": cfg.to_dict()}
    it = iter(train_loader)
    result = TrainResult(step, None, None, None, None, "max_steps", 0.0, 0, out_dir)
    t0 = time.perf_counter()
    bar = _progress(cfg, step, main)

    def checkpoint(at: int) -> Path | None:
        path = None
        model_sd, opt_sd = D.full_state(raw_model, opt, cfg.fsdp)  # collective under FSDP
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
            loss_sum = 0.0
            for micro in range(cfg.grad_accum):
                x, y = next(it)
                x, y = x.to(device), y.to(device)
                with D.no_sync(model, micro < cfg.grad_accum - 1), autocast:
                    loss = lm_loss(model(x), y) / cfg.grad_accum
                loss.backward()
                loss_sum += float(loss.detach())
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            loss_val = D.mean_across_ranks(loss_sum, device)
            if not math.isfinite(loss_val):
                raise FloatingPointError(f"loss became {loss_val} at step {step}; lower lr or enable grad_clip")
            result.loss, result.step, result.tokens = loss_val, step, result.tokens + tokens_per_step
            elapsed = time.perf_counter() - t0
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_val:.3f}", lr=f"{lr:.2e}", tok_s=f"{result.tokens / elapsed:,.0f}")
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                log.log({"step": step, "loss": loss_val, "lr": lr, "tokens": result.tokens, "time": elapsed})
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                result.val_loss = evaluate(raw_model, val_factory, cfg.eval_batches, device)
                result.val_bpb = bits_per_byte(result.val_loss, bpt) if bpt else None
                log.log({"step": step, "val_loss": result.val_loss, "val_bpb": result.val_bpb})
                if bar is not None:
                    bar.write(f"step {step}: val loss {result.val_loss:.4f}"
                              + (f", {result.val_bpb:.4f} bits/byte" if result.val_bpb else ""))
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
        plot_loss(log.records(), out_dir / "loss.png", title=f"{cfg.model} pretraining")
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


def _progress(cfg: TrainConfig, step: int, main: bool):
    if not (main and cfg.progress):
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.max_steps, initial=step, desc="pretrain", unit="step", dynamic_ncols=True)

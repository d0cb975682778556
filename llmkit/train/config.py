"""TrainConfig: YAML presets in llmkit/configs/pretrain/ plus `key=value` overrides.

    cfg = load_train_config("tiny", ["max_steps=200", "model.n_layer=2"])

Keys starting with ``model.`` override the model preset; unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmkit.core.config import from_dict, override, parse_value
from llmkit.core.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "pretrain"


@dataclass
class TrainConfig:
    model: str = "tiny-llama"  # model preset name (llmkit.model.PRESETS)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"n_layer": 4}
    init_from: str | None = None  # continue from a checkpoint / model spec instead of random init
    data: str = "data/stdlib"  # a directory written by `llmkit data prepare`
    out_dir: str = "runs/pretrain"
    batch_size: int = 16  # sequences per micro-batch per process
    seq_len: int = 256
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 1000
    max_time: float | None = None  # seconds; stop (and checkpoint) when exceeded
    stop_after: int | None = None  # stop (and checkpoint) after this step; the schedule still spans max_steps
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 disables clipping
    eval_every: int = 100
    eval_batches: int = 20
    ckpt_every: int = 500
    keep_last: int = 2
    log_every: int = 10
    seed: int = 1337
    device: str = "auto"
    dtype: str = "auto"  # autocast dtype: bf16 on GPU; fp32 on CPU
    compile: bool = False  # torch.compile the model (GPU recommended)
    fsdp: bool = False  # under torchrun: shard weights, grads and optimizer state (FSDP2) instead of DDP
    tensorboard: bool = False
    resume: bool = True  # continue from out_dir's latest checkpoint if there is one
    progress: bool = True

    def __post_init__(self) -> None:
        for key in ("batch_size", "seq_len", "grad_accum", "max_steps", "eval_every", "ckpt_every", "log_every"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be positive (got {getattr(self, key)})", f"set {key} to a positive int")
        if self.keep_last < 1:
            raise ConfigError(f"keep_last must be >= 1 (got {self.keep_last})", "keep at least one checkpoint")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def find_config(name_or_path: str, directory: Path = CONFIG_DIR) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = directory / f"{name_or_path}.yaml"
    if packaged.is_file():
        return packaged
    names = sorted(p.stem for p in directory.glob("*.yaml"))
    raise ConfigError(f"training config {name_or_path!r} not found",
                      f"pass a YAML path or one of: {', '.join(names)}")


def read_yaml_config(name_or_path: str | None, directory: Path = CONFIG_DIR) -> dict[str, Any]:
    """The mapping in a YAML config (a path or a packaged name in ``directory``); {} for None."""
    data: dict[str, Any] = {}
    if name_or_path:
        import yaml

        path = find_config(name_or_path, directory)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{str(path)!r} is not valid YAML: {e}".splitlines()[0], "fix the file") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{str(path)!r} must be a mapping of keys to values",
                              f"see configs/{directory.name}/*.yaml")
    return data


def load_train_config(name_or_path: str | None = None, overrides: list[str] | None = None) -> TrainConfig:
    data = read_yaml_config(name_or_path)
    model_over = dict(data.pop("model_overrides", None) or {})
    plain = []
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value", "write it as e.g. max_steps=200")
        if key.startswith("model."):
            model_over[key[len("model."):]] = parse_value(value)
        else:
            plain.append(item)
    cfg = override(from_dict(TrainConfig, data), plain)
    return dataclasses.replace(cfg, model_overrides=model_over)

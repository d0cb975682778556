"""FinetuneConfig: TrainConfig (the same loop settings) plus what fine-tuning and alignment add.

    cfg = load_finetune_config("sft-lora", ["data=my.jsonl", "lora_r=16"])

YAML presets live in llmkit/configs/finetune/ (exposed at the repo root as configs/finetune/).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmkit.core.config import from_dict, override
from llmkit.core.errors import ConfigError
from llmkit.train.config import TrainConfig, read_yaml_config

FT_CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "finetune"
METHODS = ("sft", "dpo", "orpo", "kto", "grpo")
ADAPTERS = ("lora", "qlora", "full")


@dataclass
class FinetuneConfig(TrainConfig):
    method: str = "sft"  # sft | dpo | orpo | kto | grpo
    init_from: str | None = "smollm2"  # the base model: packaged name, checkpoint, HF dir or GGUF
    model: str = "finetune"  # label only: the architecture comes from init_from
    data: str = "data/train.jsonl"  # conversations (sft), preference pairs (dpo/orpo), unpaired (kto), prompts (grpo)
    eval_data: str | None = None  # same format; None = hold out `eval_size` training records
    eval_size: int = 0
    format: str = "auto"  # conversation format: auto | messages | sharegpt | alpaca
    template: str | None = None  # chat template override (chatml, llama3, alpaca); default: the model's own
    max_len: int = 512  # tokens per example (prompt + answer); longer answers are cut
    packing: bool = False  # sft: pack a batch's examples into rows of max_len (segment-masked attention)
    out_dir: str = "runs/finetune"
    adapter: str = "lora"  # lora | qlora (LoRA on an NF4-quantized frozen base) | full
    qlora_block: int = 64  # NF4 block size of the qlora base (64, as in the QLoRA paper)
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("all-linear",)
    beta: float = 0.1  # DPO/KTO temperature; ORPO's lambda
    loss_type: str = "sigmoid"  # DPO: sigmoid | ipo | hinge
    label_smoothing: float = 0.0  # conservative DPO
    rpo_alpha: float = 0.0  # DPO: weight of the chosen answers' NLL added to the loss (RPO; TRL's name)
    desirable_weight: float = 1.0  # KTO
    undesirable_weight: float = 1.0
    # GRPO
    group_size: int = 4  # completions sampled per prompt
    max_new_tokens: int = 32
    temperature: float = 1.0
    clip_eps: float = 0.2
    kl_beta: float = 0.04
    rewards: tuple[str, ...] = ("exact",)  # names in llmkit.train.rewards.REWARDS
    dynamic_sampling: bool = False  # DAPO: keep only groups whose rewards differ (the others have zero advantage)
    dynamic_sampling_draws: int = 16  # extra prompts a step may draw to refill its batch with such groups
    # the loop, with fine-tuning defaults
    batch_size: int = 4
    seq_len: int = 512  # unused by fine-tuning (batches are padded to their longest row)
    max_steps: int = 100
    lr: float = 2e-4
    min_lr: float = 0.0
    warmup: int = 5
    weight_decay: float = 0.0
    beta2: float = 0.999
    eval_every: int = 50
    eval_batches: int = 8
    ckpt_every: int = 50
    log_every: int = 5
    save_merged: bool = True  # LoRA: also write the merged model at the end

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in METHODS:
            raise ConfigError(f"unknown fine-tuning method {self.method!r}", f"use one of {list(METHODS)}")
        if self.adapter not in ADAPTERS:
            raise ConfigError(f"unknown adapter {self.adapter!r}",
                              f"use one of {list(ADAPTERS)}")
        if self.max_len < 8:
            raise ConfigError(f"max_len={self.max_len} is too small", "set max_len to at least 8")
        if self.packing and self.method != "sft":
            raise ConfigError(f"packing with method {self.method!r}",
                              "packing is for sft; preference methods pair rows and keep them padded")
        if self.group_size < 2 and self.method == "grpo":
            raise ConfigError(f"group_size={self.group_size}: GRPO compares samples within a group",
                              "set group_size >= 2")
        if self.dynamic_sampling and self.method != "grpo":
            raise ConfigError(f"dynamic_sampling with method {self.method!r}",
                              "dynamic_sampling filters GRPO groups; use method=grpo or drop it")
        if self.dynamic_sampling and self.dynamic_sampling_draws < 1:
            raise ConfigError(f"dynamic_sampling_draws={self.dynamic_sampling_draws}: nothing could refill the batch",
                              "set dynamic_sampling_draws >= 1")
        if self.fsdp and self.adapter in ("lora", "qlora"):
            raise ConfigError("FSDP with LoRA is not supported", "use DDP (the default under torchrun)")


def load_finetune_config(name_or_path: str | None = None, overrides: list[str] | None = None,
                         **fields: Any) -> FinetuneConfig:
    """A packaged preset or YAML path, then key=value overrides, then keyword fields."""
    data = read_yaml_config(name_or_path, FT_CONFIG_DIR)
    cfg = override(from_dict(FinetuneConfig, data), list(overrides or []))
    return dataclasses.replace(cfg, **fields) if fields else cfg

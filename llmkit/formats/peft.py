"""LoRA adapters in the PEFT layout, so PEFT loads them onto our HF export (and we load PEFT's).

    adapter/
      adapter_model.safetensors   base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight  (r, in)
                                  base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight  (out, r)
      adapter_config.json         {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": [...], ...}

Module names are the HF names of ``llmkit.formats.hf.hf_names`` — the same
table the HF export uses, so an adapter saved here fits ``llmkit convert --to hf``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from llmkit.core.fileio import atomic_write_dir
from llmkit.formats.hf import hf_names
from llmkit.model.config import ModelConfig
from llmkit.model.lora import (AdapterError, LoRAConfig, apply_lora, has_lora, load_lora_state_dict,
                               lora_modules, lora_state_dict)

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
PREFIX = "base_model.model."  # PeftModel -> LoraModel -> the transformers model


def _module_names(cfg: ModelConfig) -> dict[str, str]:
    """Our module name -> HF module name (drop the '.weight' of the tensor table)."""
    if cfg.arch == "gpt2":
        raise AdapterError("PEFT-layout adapters are supported for Llama-family models (GPT-2 fuses q, k, v)",
                           "save with save_lora() in llmkit's own layout instead")
    return {ours[:-len(".weight")]: theirs[:-len(".weight")]
            for ours, theirs in hf_names(cfg).items() if ours.endswith(".weight")}


def peft_config(lcfg: LoRAConfig, hf_modules: list[str], base: str | None) -> dict[str, Any]:
    suffixes = sorted({m.rsplit(".", 1)[-1] for m in hf_modules})
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base,
            "r": lcfg.r, "lora_alpha": lcfg.alpha, "lora_dropout": lcfg.dropout, "bias": "none",
            "target_modules": suffixes if _suffixes_exact(hf_modules, suffixes) else hf_modules,
            "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True, "modules_to_save": None,
            "use_rslora": False, "use_dora": False, "rank_pattern": {}, "alpha_pattern": {},
            "layers_to_transform": None, "layers_pattern": None}


def _suffixes_exact(hf_modules: list[str], suffixes: list[str]) -> bool:
    """True when the short names select exactly these modules (every layer adapted alike)."""
    per = {s: sum(m.endswith("." + s) for m in hf_modules) for s in suffixes}
    return len(set(per.values())) == 1 and sum(per.values()) == len(hf_modules)


def save_adapter(path: str | os.PathLike, model: torch.nn.Module, base: str | None = None) -> Path:
    """Write the model's LoRA adapters (PEFT layout) atomically."""
    lcfg = getattr(model, "lora_config", None)
    if lcfg is None or not has_lora(model):
        raise AdapterError("the model has no LoRA adapters to save", "apply_lora(model, LoRAConfig(...)) first")
    names = _module_names(model.cfg)
    tensors: dict[str, torch.Tensor] = {}
    hf_modules = []
    for ours, t in lora_state_dict(model).items():
        module, _, which = ours.rpartition(".")
        hf = names.get(module)
        if hf is None:
            raise AdapterError(f"module {module!r} has no HF name", "adapt attention / MLP projections only")
        tensors[f"{PREFIX}{hf}.{which}.weight"] = t.float().cpu().contiguous()
        if which == "lora_A":
            hf_modules.append(hf)
    config = peft_config(lcfg, hf_modules, base)

    def fill(tmp: Path) -> None:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")

    return atomic_write_dir(path, fill)


def read_adapter(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    p = Path(path)
    try:
        config = json.loads((p / CONFIG).read_text())
        tensors = load_file(str(p / WEIGHTS))
    except FileNotFoundError as e:
        raise AdapterError(f"{str(p)!r} is not a PEFT adapter directory (no {Path(e.filename).name})",
                           f"point at a directory with {WEIGHTS} and {CONFIG}") from e
    except (json.JSONDecodeError, SafetensorError, OSError) as e:
        raise AdapterError(f"cannot read the adapter in {str(p)!r}: {e}", "the adapter files are damaged") from e
    if config.get("peft_type") != "LORA":
        raise AdapterError(f"adapter type {config.get('peft_type')!r} is not LoRA", "llmkit loads LoRA adapters")
    for key in ("use_dora", "use_rslora"):
        if config.get(key):
            raise AdapterError(f"adapter uses {key}=true, which llmkit does not implement", "train a plain LoRA")
    if config.get("rank_pattern") or config.get("alpha_pattern") or config.get("modules_to_save"):
        raise AdapterError("adapter uses per-module ranks or modules_to_save", "train a plain LoRA")
    return config, tensors


def load_adapter(model: torch.nn.Module, path: str | os.PathLike) -> torch.nn.Module:
    """Apply (if needed) and load a PEFT LoRA adapter onto an llmkit model; AdapterError on a mismatch."""
    config, tensors = read_adapter(path)
    to_ours = {hf: ours for ours, hf in _module_names(model.cfg).items()}
    ours: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        name = key.removeprefix(PREFIX).replace(".default.", ".")
        module, _, which = name.removesuffix(".weight").rpartition(".")
        if module not in to_ours or which not in ("lora_A", "lora_B"):
            raise AdapterError(f"adapter tensor {key!r} names no module of this {model.cfg.arch} model",
                               "load the adapter onto the base model it was trained on")
        ours[f"{to_ours[module]}.{which}"] = t
    modules = sorted({k.rpartition(".")[0] for k in ours})
    if not has_lora(model):
        lcfg = LoRAConfig(r=int(config["r"]), alpha=float(config["lora_alpha"]),
                          dropout=float(config.get("lora_dropout") or 0.0), targets=tuple(modules))
        apply_lora(model, lcfg)
    wrapped = {n for n, _ in lora_modules(model)}
    if wrapped != set(modules):
        raise AdapterError(f"adapter targets {len(modules)} modules, the model wraps {len(wrapped)} different ones",
                           "load onto an unadapted base model")
    alpha, r = float(config["lora_alpha"]), int(config["r"])
    for _, m in lora_modules(model):
        if m.r != r or abs(m.scaling - alpha / r) > 1e-9:
            raise AdapterError(f"adapter r={r}, alpha={alpha} differs from the model's r={m.r}, alpha={m.alpha}",
                               "load onto an unadapted base model")
    load_lora_state_dict(model, ours)
    return model



def merge_adapter(base: str, adapter: str | os.PathLike, out: str | os.PathLike, to: str = "llmkit") -> Path:
    """`llmkit lora merge`: base model + PEFT adapter -> one merged model (llmkit checkpoint or HF directory)."""
    from llmkit.formats.hf import save_hf
    from llmkit.formats.loader import load_model, save_model
    from llmkit.model.lora import merge_and_unload

    lm = load_model(base, device="cpu", dtype="float32")
    model = merge_and_unload(load_adapter(lm.model, adapter))
    if to == "hf":
        return save_hf(out, model.cfg, model.export_state_dict(), lm.tokenizer)
    meta = {"stage": "lora-merge", "parent": str(base), "adapter": str(Path(adapter).resolve())}
    return save_model(out, model, lm.tokenizer, meta)

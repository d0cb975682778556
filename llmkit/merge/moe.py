"""frankenMoE: a mixture of experts assembled from dense models (mergekit-moe's config).

    base_model: runs/base            # attention, norms and embeddings come from here
    gate_mode: hidden                # hidden | hidden_avg | cheap_embed | random
    experts_per_token: 2
    experts:
      - source_model: runs/code      # its MLPs become expert 0 of every layer
        positive_prompts: ["def f(x):", "import numpy as np"]
      - source_model: runs/chat
        positive_prompts: ["Tell me a story"]
        negative_prompts: ["SELECT * FROM"]

Router init. With ``hidden``, each expert's gate row in layer i is the (unit)
direction of what the base model feeds layer i's MLP on that expert's prompts
(last token; ``hidden_avg`` averages over tokens), minus the direction of its
negative prompts. A token then goes to the experts whose prompts it most
resembles. ``cheap_embed`` uses the mean token embedding of the prompts in
every layer (no forward pass); ``random`` draws N(0, 0.02) rows for training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from llmkit.merge.config import DTYPES, TORCH_DTYPES, MergeError
from llmkit.merge.sources import ModelSource, check_compatible, open_source
from llmkit.model import Transformer

GATE_MODES = ("hidden", "hidden_avg", "cheap_embed", "random")
TOP_KEYS = {"base_model", "gate_mode", "experts_per_token", "experts", "dtype", "seed", "name"}


@dataclass
class Expert:
    source_model: str
    positive_prompts: list[str]
    negative_prompts: list[str]


@dataclass
class MoEConfig:
    base_model: str
    experts: list[Expert]
    gate_mode: str = "hidden"
    experts_per_token: int = 2
    dtype: str = "float32"
    seed: int = 0
    name: str | None = None


def is_moe_config(raw: Any) -> bool:
    return isinstance(raw, dict) and "experts" in raw


def _prompts(item: dict, key: str, where: str) -> list[str]:
    value = item.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise MergeError(f"{key} of {where} must be a list of strings (got {value!r})", f"write {key}: [\"...\"]")
    return value


def parse_moe_config(raw: dict[str, Any]) -> MoEConfig:
    extra = set(raw) - TOP_KEYS
    if extra:
        raise MergeError(f"unknown MoE config key {sorted(extra)[0]!r}", f"allowed keys: {', '.join(sorted(TOP_KEYS))}")
    if not raw.get("base_model"):
        raise MergeError("an MoE config needs a base_model", "add base_model: PATH (attention and embeddings)")
    mode = raw.get("gate_mode", "hidden")
    if mode not in GATE_MODES:
        raise MergeError(f"unknown gate_mode {mode!r}", f"choose one of: {', '.join(GATE_MODES)}")
    items = raw.get("experts")
    if not isinstance(items, list) or len(items) < 2:
        raise MergeError(f"an MoE needs at least 2 experts (got {items!r})", "list experts: - source_model: PATH")
    experts = []
    for i, item in enumerate(items):
        where = f"experts[{i}]"
        if not isinstance(item, dict) or "source_model" not in item:
            raise MergeError(f"{where} must be a mapping with source_model (got {item!r})", "write - source_model: PATH")
        bad = set(item) - {"source_model", "positive_prompts", "negative_prompts"}
        if bad:
            raise MergeError(f"unknown key {sorted(bad)[0]!r} in {where}", "use source_model, positive_prompts, "
                                                                          "negative_prompts")
        pos = _prompts(item, "positive_prompts", where)
        if mode != "random" and not pos:
            raise MergeError(f"{where} has no positive_prompts, which gate_mode {mode!r} needs",
                             "give each expert prompts, or use gate_mode: random")
        experts.append(Expert(str(item["source_model"]), pos, _prompts(item, "negative_prompts", where)))
    k = raw.get("experts_per_token", 2)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(experts):
        raise MergeError(f"experts_per_token={k!r} must be an integer in [1, {len(experts)}]",
                         "route each token to between 1 and all experts")
    dtype = DTYPES.get(str(raw.get("dtype", "float32")).lower())
    if dtype is None:
        raise MergeError(f"unknown dtype {raw.get('dtype')!r}", f"choose one of: {', '.join(DTYPES)}")
    return MoEConfig(str(raw["base_model"]), experts, mode, k, dtype, int(raw.get("seed", 0)), raw.get("name"))


# ---- router init ---------------------------------------------------------------------------------
@torch.no_grad()
def mlp_inputs(model: Transformer, ids: list[int], average: bool) -> torch.Tensor:
    """What each layer's MLP sees for one prompt: (n_layer, C), last token or mean over tokens."""
    seen: list[torch.Tensor] = []
    hooks = [b.mlp.register_forward_hook(lambda mod, inp, out: seen.append(inp[0][0])) for b in model.blocks]
    try:
        model(torch.tensor([ids]))
    finally:
        for h in hooks:
            h.remove()
    return torch.stack([s.mean(0) if average else s[-1] for s in seen])  # (L, C)


def unit_rows(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp(min=eps)


def prompt_direction(model: Transformer, tok, prompts: list[str], mode: str) -> torch.Tensor:
    """(L, C): mean over prompts of the per-layer MLP input (or of the token embedding, cheap_embed)."""
    if not prompts:
        return torch.zeros(model.cfg.n_layer, model.cfg.d_model)
    vecs = []
    for p in prompts:
        ids = tok.encode(p)
        if mode == "cheap_embed":
            vecs.append(model.tok_emb.weight[ids].mean(0).expand(model.cfg.n_layer, -1))
        else:
            vecs.append(mlp_inputs(model, ids, average=mode == "hidden_avg"))
    return torch.stack(vecs).mean(0)


def gate_weights(cfg: MoEConfig, base: ModelSource) -> torch.Tensor:
    """(n_layer, n_expert, d_model) router weights."""
    L, C, E = base.config.n_layer, base.config.d_model, len(cfg.experts)
    if cfg.gate_mode == "random":
        g = torch.Generator().manual_seed(cfg.seed)
        return torch.randn(L, E, C, generator=g) * base.config.init_std
    model = Transformer.from_state_dict(base.config, {n: base.get(n) for n in base.names}).float()
    rows = []
    for ex in cfg.experts:
        d = prompt_direction(model, base.tokenizer, ex.positive_prompts, cfg.gate_mode)
        d = d - prompt_direction(model, base.tokenizer, ex.negative_prompts, cfg.gate_mode)
        rows.append(unit_rows(d))  # (L, C)
    return torch.stack(rows, dim=1)  # (L, E, C)


# ---- assembly ------------------------------------------------------------------------------------
def assemble_moe(cfg: MoEConfig) -> tuple[dict[str, torch.Tensor], Any, ModelSource, dict[str, Any]]:
    """(tensors, ModelConfig, base source, lineage) of the MoE the config describes."""
    specs = list(dict.fromkeys([cfg.base_model, *(e.source_model for e in cfg.experts)]))
    opened = {s: open_source(s) for s in specs}
    base = opened[cfg.base_model]
    check_compatible(base, [o for s, o in opened.items() if o is not base])
    if base.config.mlp != "swiglu":
        raise MergeError(f"MoE experts must be SwiGLU MLPs ({cfg.base_model!r} has mlp={base.config.mlp!r})",
                         "assemble MoEs from Llama-family models")
    gates = gate_weights(cfg, base)  # (L, E, C)
    dtype = TORCH_DTYPES[cfg.dtype]
    out: dict[str, torch.Tensor] = {}
    for name in base.names:
        if ".mlp." not in name:
            out[name] = base.get(name).to(dtype)
            continue
        layer, rest = name.split(".mlp.")
        for e, ex in enumerate(cfg.experts):
            # a copy each: one parent may give several experts, and safetensors refuses shared storage
            out[f"{layer}.mlp.experts.{e}.{rest}"] = opened[ex.source_model].get(name).to(dtype, copy=True)
    for i in range(base.config.n_layer):
        out[f"blocks.{i}.mlp.gate.weight"] = gates[i].to(dtype).contiguous()
    model_cfg = base.config.replace(n_expert=len(cfg.experts), n_expert_active=cfg.experts_per_token)
    parents = []
    for s, src in opened.items():
        entry = src.lineage_entry()
        entry["role"] = "base" if s == cfg.base_model else "expert"
        entry["parameters"] = {"expert": [i for i, e in enumerate(cfg.experts) if e.source_model == s]}
        parents.append(entry)
    lineage = {"method": "moe", "parameters": {"gate_mode": cfg.gate_mode, "experts_per_token": cfg.experts_per_token},
               "dtype": cfg.dtype, "seed": cfg.seed, "parents": parents,
               "experts": [{"source_model": e.source_model, "positive_prompts": e.positive_prompts,
                            "negative_prompts": e.negative_prompts} for e in cfg.experts]}
    return out, model_cfg, base, lineage


def load_moe_config(path) -> MoEConfig:
    """Read a YAML MoE config; relative model paths resolve against the config's directory."""
    from pathlib import Path

    from llmkit.merge.config import read_yaml, relative_to

    cfg = parse_moe_config(read_yaml(path))
    here = Path(path).resolve().parent
    cfg.base_model = relative_to(cfg.base_model, here)
    for e in cfg.experts:
        e.source_model = relative_to(e.source_model, here)
    return cfg

"""LoRA: a low-rank update beside a frozen linear layer.

    y = base(x) + (alpha / r) · B(A(dropout(x)))        A: (r, in), B: (out, r)

``B`` starts at zero, so a freshly wrapped model computes exactly what the base
did; only A and B train. ``merge()`` folds the update into the base weight
(W ← W + (alpha/r)·B·A) and ``unmerge()`` takes it out again; both are
idempotent (a flag records the state), so merging twice changes nothing.

    lora = apply_lora(model, LoRAConfig(r=8, alpha=16, targets=("wq", "wv")))
    with adapters_disabled(model): ref_logits = model(idx)   # the base model: the DPO reference

The wrapper needs only ``in_features``, ``out_features`` and ``forward(x)`` from
the module it wraps, so a quantized base (NF4, int8) works the same way
(QLoRA); merging into a quantized base goes through ``merged_linear()``, which
dequantizes. Names here are llmkit module names (``blocks.0.attn.wq``);
``llmkit.formats.peft`` maps them to PEFT/HF names for saving.
"""

from __future__ import annotations

import fnmatch
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

from llmkit.core.errors import LLMKitError

# HF / PEFT names of Llama-family projections, accepted as targets next to ours
HF_TARGETS = {"q_proj": "wq", "k_proj": "wk", "v_proj": "wv", "o_proj": "wo",
              "gate_proj": "w_gate", "up_proj": "w_up", "down_proj": "w_down"}
ALL_LINEAR = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


class AdapterError(LLMKitError):
    """A LoRA config, target list or adapter file that does not fit the model."""


@dataclass(frozen=True)
class LoRAConfig:
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ("wq", "wk", "wv", "wo")  # module-name patterns; "all-linear" = every projection
    init_seed: int | None = None  # seed for A's init (None: the global torch RNG)

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r <= 0:
            raise AdapterError(f"LoRA rank r={self.r!r} must be a positive integer", "set r to e.g. 8 or 16")
        if self.alpha <= 0:
            raise AdapterError(f"LoRA alpha={self.alpha!r} must be positive", "set alpha to e.g. 2 * r")
        if not 0.0 <= self.dropout < 1.0:
            raise AdapterError(f"LoRA dropout={self.dropout!r} must be in [0, 1)", "set dropout to e.g. 0.05")
        targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
        if not targets:
            raise AdapterError("LoRA targets are empty", f"name modules to adapt, e.g. {list(ALL_LINEAR)}")
        object.__setattr__(self, "targets", targets)

    @property
    def scaling(self) -> float:
        return self.alpha / self.r


class LoRALinear(nn.Module):
    """base(x) + scaling · B(A(dropout(x))) around any Linear-like ``base`` (kept frozen)."""

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.base = base
        self.in_features, self.out_features = base.in_features, base.out_features
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        w = _base_weight(base)
        device = w.device if w is not None else None
        dtype = w.dtype if w is not None and w.is_floating_point() else torch.float32
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, device=device, dtype=dtype))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.enabled = True
        self.reset_lora(generator)
        for p in self.base.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def reset_lora(self, generator: torch.Generator | None = None) -> None:
        """PEFT's init: A ~ kaiming-uniform(a=√5) (nn.Linear's default), B = 0, so the update starts at 0."""
        bound = 1.0 / math.sqrt(self.in_features)  # kaiming_uniform with a=sqrt(5) reduces to U(±1/sqrt(fan_in))
        self.lora_A.copy_(torch.rand(self.lora_A.shape, generator=generator) * 2 * bound - bound)
        self.lora_B.zero_()

    def delta_weight(self) -> torch.Tensor:
        """(out, in): the update scaling · B @ A that merging adds to W."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged == self.enabled:  # merged and on, or unmerged and off: the base alone is right
            return y
        update = (self.dropout(x).to(self.lora_A.dtype) @ self.lora_A.T) @ self.lora_B.T * self.scaling
        if self.merged:  # adapters off while merged: take the folded update back out
            update = -(x.to(self.lora_A.dtype) @ self.lora_A.T) @ self.lora_B.T * self.scaling
        return y + update.to(y.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        self._float_weight("merge").add_(self.delta_weight().to(self.base.weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        self._float_weight("unmerge").sub_(self.delta_weight().to(self.base.weight.dtype))
        self.merged = False

    @torch.no_grad()
    def merged_linear(self) -> nn.Module:
        """A plain Linear holding W + update (dequantizing a quantized base first)."""
        from llmkit.model.linear import Linear

        w = _dense_weight(self.base)
        if self.merged:
            w = w - self.delta_weight().to(w.dtype)  # the base already holds the update once
        bias = getattr(self.base, "bias", None)
        out = Linear(self.in_features, self.out_features, bias=bias is not None, device=w.device, dtype=w.dtype)
        out.weight.copy_(w + self.delta_weight().to(w.dtype))
        if bias is not None:
            out.bias.copy_(bias)
        return out

    def _float_weight(self, what: str) -> torch.Tensor:
        w = _base_weight(self.base)
        if w is None or not w.is_floating_point():
            raise AdapterError(f"cannot {what} LoRA into a {type(self.base).__name__} in place (not a float weight)",
                               "use merge_and_unload(model), which dequantizes into plain Linear layers")
        return w

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, merged={self.merged}, enabled={self.enabled}"


def _base_weight(base: nn.Module) -> torch.Tensor | None:
    w = getattr(base, "weight", None)
    return w if isinstance(w, torch.Tensor) else None


def _dense_weight(base: nn.Module) -> torch.Tensor:
    if hasattr(base, "dequantize"):
        return base.dequantize().float()
    w = _base_weight(base)
    if w is None or not w.is_floating_point():
        raise AdapterError(f"{type(base).__name__} has no float weight and no dequantize()",
                           "wrap nn.Linear-like modules only")
    return w.detach().clone()


# ---- applying to a model --------------------------------------------------------------------------
def _normalize(target: str) -> str:
    head, dot, last = target.rpartition(".")
    return head + dot + HF_TARGETS.get(last, last)


def _is_linear_like(m: nn.Module) -> bool:
    return hasattr(m, "in_features") and hasattr(m, "out_features") and not isinstance(m, LoRALinear)


def _patterns(targets: tuple[str, ...]) -> list[str]:
    return [p for t in targets for p in (ALL_LINEAR if t == "all-linear" else (_normalize(t),))]


def _fits(name: str, pattern: str) -> bool:
    return name == pattern or name.endswith("." + pattern) or fnmatch.fnmatchcase(name, pattern)


def is_target(name: str, targets: tuple[str, ...]) -> bool:
    """Whether match_targets would pick a Linear-like module called ``name`` (asked before the model exists)."""
    return any(_fits(name, p) for p in _patterns(targets))


def match_targets(model: nn.Module, targets: tuple[str, ...]) -> list[str]:
    """Names of the Linear-like modules that match any target; AdapterError for a target matching none.

    A target matches a module whose full name equals it, ends with ``.target``,
    or fits it as a glob (``blocks.1*.attn.wq``). HF names (q_proj, ...) work too.
    """
    candidates = [n for n, m in model.named_modules() if n and _is_linear_like(m)]
    found: list[str] = []
    for pat in _patterns(targets):
        hits = [n for n in candidates if _fits(n, pat)]
        if not hits:
            short = sorted({n.rsplit(".", 1)[-1] for n in candidates})
            raise AdapterError(f"LoRA target {pat!r} matches no linear module of the model",
                               f"use one of {short} (or HF names such as q_proj), or 'all-linear'")
        found.extend(h for h in hits if h not in found)
    return [n for n in candidates if n in found]  # model order


def apply_lora(model: nn.Module, cfg: LoRAConfig) -> list[str]:
    """Wrap the targeted modules in LoRALinear, freeze everything else; returns the wrapped names."""
    names = match_targets(model, cfg.targets)
    tied = getattr(getattr(model, "cfg", None), "tie_embeddings", False)
    if tied and "lm_head" in names:
        raise AdapterError("LoRA on lm_head of a model with tied embeddings would also change the embedding",
                           "leave lm_head out of the targets")
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(cfg.init_seed) if cfg.init_seed is not None else None
    for name in names:
        parent, attr = _parent(model, name)
        setattr(parent, attr, LoRALinear(getattr(parent, attr), cfg.r, cfg.alpha, cfg.dropout, gen))
    model.lora_config = cfg  # remembered for saving
    return names


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    head, _, attr = name.rpartition(".")
    return (model.get_submodule(head) if head else model), attr


def lora_modules(model: nn.Module) -> Iterator[tuple[str, LoRALinear]]:
    for name, m in model.named_modules():
        if isinstance(m, LoRALinear):
            yield name, m


def has_lora(model: nn.Module) -> bool:
    return next(lora_modules(model), None) is not None


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """{'blocks.0.attn.wq.lora_A': (r, in), '...lora_B': (out, r)} for every adapter."""
    out = {}
    for name, m in lora_modules(model):
        out[f"{name}.lora_A"] = m.lora_A.detach()
        out[f"{name}.lora_B"] = m.lora_B.detach()
    return out


@torch.no_grad()
def load_lora_state_dict(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy adapter tensors in; AdapterError when names or shapes do not match the wrapped model."""
    mods = dict(lora_modules(model))
    expected = {f"{n}.lora_{k}" for n in mods for k in "AB"}
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise AdapterError(f"adapter does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}",
                           "load the adapter onto the base model (and targets) it was trained on")
    for key, t in tensors.items():
        name, _, which = key.rpartition(".")
        param = getattr(mods[name], which)
        if tuple(t.shape) != tuple(param.shape):
            raise AdapterError(f"adapter tensor {key!r} has shape {tuple(t.shape)}, the model needs "
                               f"{tuple(param.shape)}", "load the adapter onto the base model it was trained on")
        was_merged = mods[name].merged
        mods[name].unmerge()
        param.copy_(t)
        if was_merged:
            mods[name].merge()


def merge_lora(model: nn.Module) -> None:
    for _, m in lora_modules(model):
        m.merge()


def unmerge_lora(model: nn.Module) -> None:
    for _, m in lora_modules(model):
        m.unmerge()


@contextmanager
def adapters_disabled(model: nn.Module):
    """Run the base model (adapters off) inside the block: the reference policy for DPO/KTO/GRPO."""
    mods = [m for _, m in lora_modules(model)]
    before = [m.enabled for m in mods]
    for m in mods:
        m.enabled = False
    try:
        yield model
    finally:
        for m, e in zip(mods, before):
            m.enabled = e


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Replace every LoRALinear by a plain Linear with the update folded in; returns the model."""
    for name, m in list(lora_modules(model)):
        parent, attr = _parent(model, name)
        w = _base_weight(m.base)
        if w is not None and w.is_floating_point():
            m.merge()  # fold in place: no copy of the weight
            setattr(parent, attr, m.base)
        else:
            setattr(parent, attr, m.merged_linear())
    for p in model.parameters():
        p.requires_grad_(True)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    model.__dict__.pop("lora_config", None)
    return model


@dataclass
class LoRAInfo:
    """What an adapter adds: wrapped modules and trainable parameters."""

    modules: list[str] = field(default_factory=list)
    trainable: int = 0
    total: int = 0


def lora_info(model: nn.Module) -> LoRAInfo:
    mods = [n for n, _ in lora_modules(model)]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return LoRAInfo(mods, trainable, sum(p.numel() for p in model.parameters()))

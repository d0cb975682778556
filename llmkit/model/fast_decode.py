"""Batch-1 decode of a quantized Llama-style model in one C++ call per token.

Why: at batch 1 a quantized SmolLM2's matmuls take about 11 ms per token here,
but the same step run as torch ops took about 26 ms. The difference is
dispatch: every layer is a few dozen small ops (norms, RoPE, the cache write,
attention over one query, SiLU, adds, reshapes), each costing microseconds of
Python and ATen overhead for a few hundred floats of work. ``DecodePlan``
(csrc/decode.cpp) runs all blocks in one call, with the projections on the same
kernels as ``QuantLinear``, so the step costs little more than its matmuls.

It applies only where it is exact in meaning: one row, one new token, a cache
without left padding, no gradient, CPU float32, RoPE + RMSNorm + SwiGLU blocks
whose seven projections are all ``QuantLinear``. Everything else (prefill,
batches, fp32 weights, LoRA, GPT-2, MoE) takes the regular path. The plan holds
references to the layers' tensors, so in-place weight updates are seen; it is
rebuilt when a layer or buffer is replaced. ``LLMKIT_FAST_DECODE=0`` turns it off.
"""

from __future__ import annotations

import operator
import os
from typing import TYPE_CHECKING

import torch

from llmkit.model.layers import MLP, RMSNorm
from llmkit.model.qkernels import kernels
from llmkit.model.qlinear import QuantLinear

if TYPE_CHECKING:
    from llmkit.model.kv_cache import KVCache
    from llmkit.model.transformer import Transformer

ENABLED = os.environ.get("LLMKIT_FAST_DECODE", "1") != "0"


def _projections(block) -> list:
    a, m = block.attn, block.mlp
    return [a.wq, a.wk, a.wv, a.wo, getattr(m, "w_gate", None), m.w_up, m.w_down]


def _watch(model: "Transformer") -> tuple:
    """What the plan points into, as cheap checks: (slot dict, name, object) for every module, buffer and
    parameter slot on the way to a weight, and (parameter, data_ptr) for the norm weights, whose storage
    ``model.to(...)`` swaps in place. Checking these costs dict lookups, not ``nn.Module.__getattr__``."""
    slots, ptrs = [(model._modules, "blocks", model.blocks)], []
    for name, b in model.blocks._modules.items():
        slots.append((model.blocks._modules, name, b))
        for norm_name in ("attn_norm", "mlp_norm"):
            norm = b._modules[norm_name]
            slots += [(b._modules, norm_name, norm), (norm._parameters, "weight", norm.weight)]
            ptrs.append((norm.weight, norm.weight.data_ptr()))
        for holder_name, attrs in (("attn", ("wq", "wk", "wv", "wo")), ("mlp", ("w_gate", "w_up", "w_down"))):
            holder = b._modules[holder_name]
            slots.append((b._modules, holder_name, holder))
            for a in attrs:
                p = holder._modules.get(a)
                slots.append((holder._modules, a, p))
                for buf in ("qweight", "scale", "min", "bias"):
                    if p is not None and buf in p._buffers:
                        slots.append((p._buffers, buf, p._buffers[buf]))
    return tuple(zip(*slots)), tuple(zip(*ptrs)) or ((), ()), len(model.blocks)


def _unchanged(model: "Transformer", watch: tuple) -> bool:
    (dicts, keys, objs), (params, ptrs), n = watch  # map() keeps the ~1000 checks out of the bytecode loop
    return (len(model.blocks._modules) == n and all(map(operator.is_, map(dict.get, dicts, keys), objs))
            and all(map(operator.eq, map(torch.Tensor.data_ptr, params), ptrs)))


def _shape_fits(model: "Transformer") -> bool:
    c = model.cfg
    return c.pos == "rope" and c.norm == "rmsnorm" and c.mlp == "swiglu" and not c.n_expert


def _eligible(model: "Transformer") -> bool:
    for b in model.blocks:
        if not (isinstance(b.attn_norm, RMSNorm) and isinstance(b.mlp_norm, RMSNorm) and isinstance(b.mlp, MLP)):
            return False
        if b.attn_norm.weight.dtype != torch.float32 or b.mlp_norm.weight.dtype != torch.float32:
            return False
        for p in _projections(b):
            if type(p) is not QuantLinear or p.qweight.device.type != "cpu":
                return False
    return True


def _build(model: "Transformer", k):
    c = model.cfg
    plan = k.DecodePlan(c.n_head, c.kv_heads, c.dim_head, c.d_model, c.ff_dim, float(c.norm_eps))
    for b in model.blocks:
        plan.add_layer(b.attn_norm.weight.detach(), b.mlp_norm.weight.detach())
        for p in _projections(b):
            plan.add_linear(p.qweight, p.scale, p.min, p.bias, p.group_size, p.bits, bool(p.exact_activations))
    return plan


def plan_for(model: "Transformer"):
    """The model's DecodePlan, built on first use and kept until a layer changes; None when not eligible."""
    if not ENABLED or not _shape_fits(model):  # MoE blocks have no w_up: check the shape before _key
        return None
    cached = model.__dict__.get("_decode_plan")
    if cached is not None and _unchanged(model, cached[0]):
        return cached[1]
    k = kernels()
    plan = _build(model, k) if k is not None and hasattr(k, "DecodePlan") and _eligible(model) else None
    model.__dict__["_decode_plan"] = (_watch(model), plan)
    return plan


def usable(model: "Transformer", idx: torch.Tensor, kv_cache: "KVCache | None") -> bool:
    """Whether this forward is a batch-1, one-token, unpadded, no-grad CPU decode step."""
    return (ENABLED and kv_cache is not None and idx.shape == (1, 1) and model.cfg.pos == "rope" and not kv_cache.padded
            and kv_cache.batch == 1 and not torch.is_grad_enabled() and idx.device.type == "cpu"
            and kv_cache.k.dtype == torch.float32 and model.rope_cos.dtype == torch.float32 and not model.training)


def step(model: "Transformer", plan, idx: torch.Tensor, kv_cache: "KVCache") -> torch.Tensor:
    """Run all blocks for one token; returns the hidden state (1, 1, C) before the final norm."""
    x = model.tok_emb.weight[idx[0, 0]].float().clone()  # (C,)
    plan.step(x, kv_cache.k, kv_cache.v, kv_cache.pos, model.rope_cos, model.rope_sin)
    kv_cache.advance(1)
    return x.view(1, 1, -1)

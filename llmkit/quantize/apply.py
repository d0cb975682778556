"""Quantize a whole Transformer in place: pick the method, replace each Linear by its quantized layer.

    quantize_model(model, "int4", bits=4, group_size=32)                # round-to-nearest, no data
    quantize_model(model, "gptq", bits=4, group_size=128, calib=ids)    # ids (n, T) calibration tokens

Methods: int8 (per-channel absmax), int8-zp (per-channel zero-point), int4
(group-wise round-to-nearest, any of 2/3/4 bits), nf4 (QLoRA's 4-bit normal
float, double-quantized block scales), gptq and awq (both need calibration
token ids). The embedding table stays in float: a decode step reads one row
of it, so it costs memory but not speed. The head is quantized too (it is a
fifth of SmolLM2's weights, so it matters for speed), but to per-channel int8
for the 4-bit methods, round-to-nearest.
Returns the ``meta.json`` description the loader uses to rebuild the model.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from llmkit.model import Transformer
from llmkit.model.qlinear import NF4Linear, QuantLinear
from llmkit.quantize import awq, gptq
from llmkit.quantize.errors import QuantizationError
from llmkit.quantize.rtn import GroupQuant, absmax_int8, check_bits, check_group_size, quantize_groupwise, zeropoint_int8

METHODS = ("int8", "int8-zp", "int4", "nf4", "gptq", "awq")
CALIBRATED = ("gptq", "awq")


def to_quant_linear(gq: GroupQuant, bias: torch.Tensor | None = None) -> QuantLinear:
    """GroupQuant (codes, scale, zero) -> QuantLinear storing w = scale * q + min with min = -scale * zero."""
    if gq.bits <= 4:  # 2 and 3-bit codes use the 4-bit container
        return QuantLinear.from_quantized(gq.q, gq.scale, -gq.scale * gq.zero, 4, bias)
    q = gq.q.to(torch.int16) - 128  # unsigned codes -> int8 storage, zero shifts with it
    zero = gq.zero - 128
    has_min = bool((zero != 0).any())
    return QuantLinear.from_quantized(q, gq.scale, -gq.scale * zero if has_min else None, 8, bias)


def int8_linear(w: torch.Tensor, bias: torch.Tensor | None, zero_point: bool) -> QuantLinear:
    """Per-channel int8: one group spanning the whole row."""
    if zero_point:
        q, scale, zero = zeropoint_int8(w.detach().float(), per_channel=True)
        return QuantLinear.from_quantized(q, scale, -scale * zero, 8, bias, scale_dtype=torch.float32)
    q, scale = absmax_int8(w.detach().float(), per_channel=True)
    return QuantLinear.from_quantized(q, scale, None, 8, bias, scale_dtype=torch.float32)


def linear_names(model: Transformer) -> list[str]:
    """Every Linear of the blocks in execution order, then the head."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.startswith("blocks.")]
    return names + ["lm_head"]


def _check(model: Transformer, method: str, bits: int, group_size: int) -> None:
    if method not in METHODS:
        raise QuantizationError(f"unknown quantization method {method!r}", f"choose one of: {', '.join(METHODS)}")
    if method in ("int4", "gptq", "awq"):
        check_bits(bits)
        if bits == 8:
            raise QuantizationError(f"method {method} with 8 bits is int8", "use --method int8, or --bits 4")
        if group_size % 32:
            raise QuantizationError(f"group size {group_size} is not a multiple of 32",
                                    "the packed 4-bit kernel works on 32-value blocks: use 32, 64 or 128")
        for name in linear_names(model):
            check_group_size(model.get_submodule(name).in_features, group_size, name)


def quantize_model(model: Transformer, method: str = "int8", bits: int = 4, group_size: int = 32,
                   symmetric: bool = False, calib: torch.Tensor | None = None, act_order: bool = True,
                   block_size: int = 64) -> dict[str, Any]:
    """Quantize ``model`` in place; returns {"method", ..., "layers": {name: layer spec}}."""
    _check(model, method, bits, group_size)
    if method in CALIBRATED and calib is None:
        raise QuantizationError(f"method {method} needs calibration text", "pass --calib PATH (or use the default corpus)")
    model.eval()
    gptq_results: dict[str, GroupQuant] = {}
    with torch.no_grad():
        if method == "awq":
            awq_scale_model(model, calib, bits, group_size, symmetric)
        elif method == "gptq":
            gptq_results = gptq_model(model, calib, bits, group_size, symmetric, act_order)
        layers = {}
        for name in linear_names(model):
            lin = model.get_submodule(name)
            w, b = lin.weight, lin.bias
            if method in ("int8", "int8-zp") or (name == "lm_head" and method != "nf4"):
                # 4-bit methods keep the head at 8 bits (llama.cpp's Q4 files do too): it is one layer, but
                # its errors go straight into the logits, and 4 bits there cost SmolLM2 tens of % perplexity
                new: nn.Module = int8_linear(w, b, method == "int8-zp")
            elif method == "nf4":
                new = NF4Linear.from_linear(lin, block_size, double_quant=True)
            else:
                gq = gptq_results.get(name) or quantize_groupwise(w, bits, group_size, symmetric, name)
                new = to_quant_linear(gq, b)
            if isinstance(new, QuantLinear):
                new.exact_activations = name == "lm_head"  # see QuantLinear: the head keeps float activations
            model.set_submodule(name, new)
            layers[name] = new.spec()
    info = {"method": method, "bits": 8 if method.startswith("int8") else bits, "layers": layers}
    if method not in ("int8", "int8-zp", "nf4"):
        info.update(group_size=group_size, symmetric=symmetric)
    if method == "gptq":
        info["act_order"] = act_order
    return info


# ---- running calibration data through the blocks ------------------------------------------


def _block_inputs(model: Transformer, ids: torch.Tensor):
    """The hidden states entering block 0 for ids (n, T), and the rotary tables the blocks take."""
    T = ids.shape[1]
    x = model.tok_emb(ids)  # (n, T, C)
    cos = sin = None
    if model.cfg.pos == "rope":
        if T > model._rope_len:
            model._build_rope(T)
        cos, sin = model.rope_cos[:T][None, None], model.rope_sin[:T][None, None]
    else:
        x = x + model.pos_emb(torch.arange(T))
    return x, cos, sin


def _groups(block) -> list[list[str]]:
    """Linears of one block that read the same input, in execution order."""
    mlp_in = ["mlp.w_gate", "mlp.w_up"] if block.mlp.gated else ["mlp.w_up"]
    return [["attn.wq", "attn.wk", "attn.wv"], ["attn.wo"], mlp_in, ["mlp.w_down"]]


def _capture_inputs(block, names: list[str], run) -> dict[str, list[torch.Tensor]]:
    """Run ``run()`` with hooks that record the input of each named submodule."""
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    hooks = [block.get_submodule(n).register_forward_hook(
        lambda _m, inp, _out, n=n: seen[n].append(inp[0].reshape(-1, inp[0].shape[-1]))) for n in names]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return seen


def gptq_model(model: Transformer, calib: torch.Tensor, bits: int, group_size: int, symmetric: bool,
               act_order: bool, batch: int = 4) -> dict[str, GroupQuant]:
    """Block by block, group by group: each layer is calibrated on inputs that already went
    through the quantized layers before it (the errors GPTQ compensates include upstream ones)."""
    x, cos, sin = _block_inputs(model, calib)
    out: dict[str, GroupQuant] = {}

    def run_block(block, xs):
        return torch.cat([block(xs[i : i + batch], cos, sin, None) for i in range(0, xs.shape[0], batch)])

    for bi, block in enumerate(model.blocks):
        for group in _groups(block):
            seen = _capture_inputs(block, group[:1], lambda: run_block(block, x))
            H = gptq.hessian(torch.cat(seen[group[0]]))
            for name in group:
                lin = block.get_submodule(name)
                full = f"blocks.{bi}.{name}"
                gq = gptq.gptq_quantize(lin.weight, H, bits, group_size, symmetric, act_order, name=full)
                lin.weight.copy_(gq.dequantize())  # later groups see this layer's quantized output
                out[full] = gq
        x = run_block(block, x)
    return out


def nf4_base(model: nn.Module, names: list[str], block_size: int = 64) -> None:
    """QLoRA's base: the named Linear layers become frozen NF4 (double-quantized) layers, in place."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        lin = getattr(parent, child)
        if isinstance(lin, NF4Linear):
            continue
        setattr(parent, child, NF4Linear.from_linear(lin, block_size, double_quant=True))


def nf4_on_load(select: Callable[[str], bool], block_size: int = 64) -> Callable[[str, nn.Linear], nn.Module | None]:
    """For ``load_model(convert_linear=...)``: each selected Linear becomes NF4 as soon as it is read.

    The same layers as ``nf4_base`` after a full load, but only one layer's float weight exists at a time.
    """
    def convert(name: str, lin: nn.Linear) -> nn.Module | None:
        return NF4Linear.from_linear(lin, block_size, double_quant=True) if select(name) else None

    return convert


def awq_scale_model(model: Transformer, calib: torch.Tensor, bits: int, group_size: int, symmetric: bool,
                    max_rows: int = 2048, clip: bool = True) -> list[list[float]]:
    """Search and fold AWQ scales into every block (the fp model's outputs do not change), then, with
    ``clip``, clip each group's weight range where that lowers the quantized output error."""
    def fake_quant(w):
        return quantize_groupwise(w, bits, group_size, symmetric).dequantize()

    x, cos, sin = _block_inputs(model, calib)
    gen = torch.Generator().manual_seed(0)
    errors = []
    for block in model.blocks:
        names = ["attn.wq", "mlp.w_up", "mlp.w_down"]
        seen = _capture_inputs(block, names, lambda: block(x, cos, sin, None))
        acts = {}
        for n in names:
            a = torch.cat(seen[n])
            acts[n] = a[torch.randperm(a.shape[0], generator=gen)[:max_rows]]
        attn, mlp = block.attn, block.mlp
        up_in = [mlp.w_gate, mlp.w_up] if mlp.gated else [mlp.w_up]
        plans = [(block.attn_norm, [attn.wq, attn.wk, attn.wv], acts["attn.wq"]),
                 (block.mlp_norm, up_in, acts["mlp.w_up"])]
        if mlp.gated:  # down reads silu(gate) * up: scaling up's rows scales that product
            plans.append((mlp.w_up, [mlp.w_down], acts["mlp.w_down"]))
        for prev, readers, a in plans:
            s, errs = awq.search_scale(a, [r.weight for r in readers], fake_quant)
            errors.append(errs)
            fold_scale(prev, readers, s)
            if clip:  # the readers now see a / s
                for r in readers:
                    if r is not attn.wq and r is not attn.wk:
                        r.weight.copy_(awq.search_clip((a / s)[: awq.CLIP_ROWS], r.weight, group_size, symmetric,
                                                       fake_quant)[0])
        x = block(x, cos, sin, None)
    return errors


def fold_scale(prev: nn.Module, readers: list[nn.Linear], s: torch.Tensor) -> None:
    """prev's output /= s (norm weight and bias, or Linear rows), readers' input columns *= s."""
    if isinstance(prev, nn.Linear):
        prev.weight.div_(s[:, None])
    else:
        prev.weight.div_(s)
    if getattr(prev, "bias", None) is not None:
        prev.bias.div_(s)
    for r in readers:
        r.weight.mul_(s)

"""`llmkit quantize MODEL --method ... --out DIR` as a typed function.

    path = quantize("smollm2", method="gptq", bits=4, group_size=64, calib_text=text, out="runs/q/gptq")
    lm = load_model(path)          # quantized layers rebuilt from meta.json, ready to generate

The output is an ordinary llmkit checkpoint: the quantized layers' integer
codes and scales are tensors in model.safetensors (``blocks.0.attn.wq.qweight``,
``.scale``, ``.min``), and meta.json["quantization"] says which layer has which
format, so checkpoints without it load exactly as before.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from llmkit.formats.loader import LoadedModel, load_model, save_model
from llmkit.quantize.apply import CALIBRATED, quantize_model
from llmkit.quantize.errors import QuantizationError


def calibration_ids(tokenizer, text: str, n_samples: int, seq_len: int) -> torch.Tensor:
    """``n_samples`` windows of ``seq_len`` tokens spread evenly over ``text`` -> (n_samples, seq_len)."""
    if n_samples < 1 or seq_len < 2:
        raise QuantizationError(f"calibration needs at least 1 sample of 2 tokens (got {n_samples} x {seq_len})",
                                "raise --calib-samples / --calib-len")
    ids = tokenizer.encode(text, disallowed_special=())  # special-token strings are plain text here
    need = n_samples * seq_len
    if len(ids) < need:
        raise QuantizationError(
            f"calibration text has {len(ids)} tokens, fewer than the {need} needed ({n_samples} x {seq_len})",
            "pass a longer --calib file or lower --calib-samples / --calib-len")
    t = torch.tensor(ids)
    starts = torch.linspace(0, len(ids) - seq_len, n_samples).long()
    return torch.stack([t[s : s + seq_len] for s in starts.tolist()])


def quantize_loaded(lm: LoadedModel, method: str = "int8", bits: int = 4, group_size: int = 32,
                    symmetric: bool = False, calib_text: str | None = None, calib_samples: int = 32,
                    calib_len: int = 256, act_order: bool = True) -> dict[str, Any]:
    """Quantize an already-loaded fp32 model in place; returns the meta.json quantization record."""
    calib = None
    if method in CALIBRATED:
        if not calib_text:
            raise QuantizationError(f"method {method} needs calibration text", "pass --calib PATH")
        calib = calibration_ids(lm.tokenizer, calib_text, calib_samples, calib_len)
    info = quantize_model(lm.model, method, bits, group_size, symmetric, calib, act_order)
    if calib is not None:
        info["calibration"] = {"samples": calib_samples, "tokens_per_sample": calib_len}
    return info


def quantize(model: str | os.PathLike = "smollm2", method: str = "int8", bits: int = 4, group_size: int = 32,
             symmetric: bool = False, calib_text: str | None = None, calib_samples: int = 32, calib_len: int = 256,
             act_order: bool = True, out: str | os.PathLike = "runs/quantized") -> Path:
    """Load MODEL in fp32, quantize it with ``method`` and write a checkpoint to ``out``."""
    lm = load_model(model, device="cpu", dtype="float32")
    if Path(out).resolve() == lm.path.resolve():
        raise QuantizationError(f"output {str(out)!r} is the source model", "write to a new directory")
    info = quantize_loaded(lm, method, bits, group_size, symmetric, calib_text, calib_samples, calib_len, act_order)
    meta = {"stage": "quantize", "parent": str(lm.path.resolve()), "name": f"{lm.name}-{method}",
            "source_format": lm.meta.get("source_format", "llmkit"), "quantization": info,
            "lineage": list(lm.meta.get("lineage", [])) + [{"op": "quantize", "method": method,
                                                             "from": str(lm.path.resolve())}]}
    return save_model(out, lm.model, lm.tokenizer, meta)

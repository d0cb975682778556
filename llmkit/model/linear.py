"""Linear layer with a faster CPU inference path (oneDNN prepacked weights).

At small batch, decode time is reading weights. PyTorch's default CPU GEMM
re-packs the weight matrix on every call, which for a batch of 1..8 rows wastes
most of the memory bandwidth. oneDNN can pack a weight once into its blocked
layout and reuse it (the path torch.compile's CPU backend uses). Measured on
the 2-core reference machine, all SmolLM2 projections: 46 → 27 ms per token at
batch 1, 61 → 25 ms at batch 8 (bench/generate.py has the end-to-end figures).

The packed copy is a cache, not a parameter: ``state_dict`` and training are
unchanged. It is used only when no gradient is being recorded, on CPU, for
float32 weights, and it is rebuilt whenever the weight is modified in place
(``tensor._version`` changes). Set ``LLMKIT_PREPACK=0`` to disable it.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

_BATCH_HINT = 8  # oneDNN picks a blocked layout for this many rows; fast for 1..8, fine for prefill


def _prepack_supported() -> bool:
    if os.environ.get("LLMKIT_PREPACK", "1") == "0":
        return False
    if not torch.backends.mkldnn.is_available():
        return False
    return hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and hasattr(torch.ops.mkldnn, "_linear_pointwise")


PREPACK = _prepack_supported()


class Linear(nn.Linear):
    """nn.Linear whose no-grad CPU fp32 forward runs on a cached oneDNN-packed weight."""

    _packed: torch.Tensor | None = None
    _packed_key: tuple | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if PREPACK and not torch.is_grad_enabled() and w.device.type == "cpu" and w.dtype == torch.float32 \
                and x.dtype == torch.float32:
            key = (w.data_ptr(), w._version, tuple(w.shape))
            if self._packed_key != key:
                self._packed = torch.ops.mkldnn._reorder_linear_weight(w.detach(), _BATCH_HINT)
                self._packed_key = key
            return torch.ops.mkldnn._linear_pointwise(x, self._packed, self.bias, "none", [], "")
        return F.linear(x, w, self.bias)

    def _apply(self, fn, recurse=True):  # .to(), .float(), .cuda(): drop the stale cache
        self._packed = self._packed_key = None
        return super()._apply(fn, recurse)

    def __getstate__(self):  # deepcopy/pickle never carry the packed cache
        state = dict(super().__getstate__())
        state.pop("_packed", None)
        state.pop("_packed_key", None)
        return state

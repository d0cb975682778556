"""The obviously-correct generator: no cache, no batching, full forward every step.

Kept as the oracle the fast engine is tested against (tests/generate).
"""

from __future__ import annotations

from typing import Sequence

import torch

from llmkit.model import Transformer


@torch.inference_mode()
def naive_greedy(model: Transformer, prompt: Sequence[int], max_tokens: int,
                 stop_ids: Sequence[int] = ()) -> list[int]:
    ids = list(prompt)
    out: list[int] = []
    for _ in range(max_tokens):
        logits = model(torch.tensor([ids]))[0, -1]  # re-reads the whole prefix: O(T^2), but obviously right
        tok = int(logits.argmax())
        if tok in stop_ids:
            break
        out.append(tok)
        ids.append(tok)
    return out

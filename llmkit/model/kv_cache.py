"""A preallocated key/value cache, passed explicitly to ``Transformer.forward``.

Rows of different lengths are *left-padded*: every row writes its next token
into the same slot, so writes are plain slices (fast), and ``start[b]`` marks
the first real slot of row b. Row b's token in slot s sits at position
``s - start[b]``; slots before ``start[b]`` are masked out of attention.

    cache = KVCache.allocate(cfg, batch=2, max_len=256)
    logits = model(prompt_ids, kv_cache=cache)    # prefill: slots [0, T)
    logits = model(next_ids, kv_cache=cache)      # decode: slot T
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KVCache:
    k: torch.Tensor  # (L, B, Hkv, S, D)
    v: torch.Tensor  # (L, B, Hkv, S, D)
    start: torch.Tensor  # (B,) first valid slot per row (left padding)
    pos: int = 0  # next slot to write, shared by all rows
    padded: bool = False  # any start > 0: attention needs an explicit mask

    @classmethod
    def allocate(cls, cfg, batch: int, max_len: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", start: torch.Tensor | None = None) -> "KVCache":
        shape = (cfg.n_layer, batch, cfg.kv_heads, max_len, cfg.dim_head)
        if start is None:
            start = torch.zeros(batch, dtype=torch.long, device=device)
        start = start.to(device=device, dtype=torch.long)
        return cls(k=torch.zeros(shape, dtype=dtype, device=device),
                   v=torch.zeros(shape, dtype=dtype, device=device),
                   start=start, pos=0, padded=bool((start > 0).any()))

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, Hkv, T, D) at slots [pos, pos+T); return all keys/values so far."""
        T = k.shape[2]
        end = self.pos + T
        assert end <= self.max_len, "the caller checks for context overflow before the forward"
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]  # (B, Hkv, end, D)

    def advance(self, n: int) -> None:
        self.pos += n

    def positions(self, T: int) -> torch.Tensor:
        """Position ids (B, T) of the next T slots: slot - start[b] (pads clamp to 0)."""
        slots = torch.arange(self.pos, self.pos + T, device=self.start.device)
        return (slots[None, :] - self.start[:, None]).clamp_min(0)

    def select(self, rows: torch.Tensor | list[int]) -> None:
        """Keep only these rows (finished rows drop out; beam search reorders)."""
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.k.device)
        self.k = self.k.index_select(1, idx)
        self.v = self.v.index_select(1, idx)
        self.start = self.start.index_select(0, idx)
        self.padded = bool((self.start > 0).any())

    def reset(self) -> None:
        self.pos = 0

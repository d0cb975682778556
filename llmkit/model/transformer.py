"""The Transformer: token ids in, next-token logits out. It never sees strings.

    tokens (B, T) ─ tok_emb ─► x (B, T, C) ─ [Block × n_layer] ─ norm_f ─ lm_head ─► logits (B, T, V)

One class covers GPT-2 and Llama/SmolLM/Qwen2 through ModelConfig flags.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from llmkit.core.errors import ContextOverflowError
from llmkit.model import fast_decode
from llmkit.model.config import ModelConfig
from llmkit.model.kv_cache import KVCache
from llmkit.model.layers import Block, make_norm
from llmkit.model.linear import Linear
from llmkit.model.rope import rope_cache, rope_inv_freq


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, device: torch.device | str | None = None):
        super().__init__()
        self.cfg = cfg
        # _weight=empty skips nn.Embedding's own init: init_weights() below is the one place for it
        # (and on the meta device its normal_ would drag in torch._dynamo, ~1.5 s of imports)
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model,
                                    _weight=torch.empty(cfg.vocab_size, cfg.d_model, device=device))
        if cfg.pos == "learned":
            self.pos_emb = nn.Embedding(cfg.max_seq_len, cfg.d_model,
                                        _weight=torch.empty(cfg.max_seq_len, cfg.d_model, device=device))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i, device) for i in range(cfg.n_layer))
        self.norm_f = make_norm(cfg, device)
        self.lm_head = Linear(cfg.d_model, cfg.vocab_size, bias=False, device=device)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight  # one Parameter, stored once on save
        self._rope_len = 0
        if cfg.pos == "rope":
            self._build_rope(min(cfg.max_seq_len, 4096), "cpu" if str(device) == "meta" else device)
        if str(device) != "meta":
            self.init_weights()

    # ---- setup -------------------------------------------------------------------------------
    def _build_rope(self, length: int, device=None) -> None:
        """cos/sin tables are buffers (follow .to(device)) but not saved: they derive from config."""
        c = self.cfg
        inv_freq, scale = rope_inv_freq(c.dim_head, c.rope_theta, c.rope_scaling, c.rope_factor,
                                        c.rope_original_max_seq_len, c.rope_low_freq_factor,
                                        c.rope_high_freq_factor, c.yarn_beta_fast, c.yarn_beta_slow)
        cos, sin = rope_cache(inv_freq, length, scale)
        device = device if device is not None else self.tok_emb.weight.device
        self.register_buffer("rope_cos", cos.to(device), persistent=False)  # (S, D/2)
        self.register_buffer("rope_sin", sin.to(device), persistent=False)
        self._rope_len = length

    @torch.no_grad()
    def init_weights(self, seed: int | None = None) -> "Transformer":
        """All weight init in one place: N(0, std), residual projections scaled by 1/sqrt(2L)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif "norm" in name:
                p.fill_(1.0)
            else:
                # residual-stream writers (wo, w_down) add up over 2L layers: keep their sum at unit scale
                s = std / math.sqrt(2 * self.cfg.n_layer) if name.endswith(("wo.weight", "w_down.weight")) else std
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * s)
        return self

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a tied weight once
        if non_embedding:
            n -= self.tok_emb.weight.numel()
            if self.cfg.pos == "learned":
                n -= self.pos_emb.weight.numel()
        return n

    # ---- weights in and out -----------------------------------------------------------------
    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """state_dict without the tied lm_head copy (safetensors refuses shared storage)."""
        sd = self.state_dict()
        if self.cfg.tie_embeddings:
            sd.pop("lm_head.weight", None)
        return sd

    def tie_weights(self) -> None:
        """Point the head at the embedding (after anything that may have replaced Parameters)."""
        if self.cfg.tie_embeddings and isinstance(self.lm_head, nn.Linear):  # a quantized head has its own copy
            self.lm_head.weight = self.tok_emb.weight

    def load_weights(self, tensors: dict[str, torch.Tensor], strict: bool = True, assign: bool = False) -> None:
        """Load a state dict; with assign=True the given tensors become the parameters."""
        tensors = dict(tensors)
        if self.cfg.tie_embeddings:
            tensors.pop("lm_head.weight", None)  # re-tied below: the embedding is the head
        missing, unexpected = self.load_state_dict(tensors, strict=False, assign=assign)
        self.tie_weights()  # assign=True replaces Parameter objects, so re-point the head
        missing = [m for m in missing if not (self.cfg.tie_embeddings and m == "lm_head.weight")]
        if strict and (missing or unexpected):
            raise KeyError(f"missing={missing[:5]} unexpected={unexpected[:5]}")

    # ---- forward ------------------------------------------------------------------------------
    @classmethod
    def from_state_dict(cls, cfg: ModelConfig, tensors: dict[str, torch.Tensor]) -> "Transformer":
        """Build a model straight onto given weights (no wasted random init)."""
        model = cls(cfg, device="meta")  # parameters without memory or random init
        model.load_weights(tensors, assign=True)  # the loaded tensors become the parameters: no copy
        return model.eval()

    def forward(self, idx: torch.Tensor, kv_cache: KVCache | None = None,
                last_only: bool = False, segments: torch.Tensor | None = None) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, V), or (B, 1, V) with last_only.

        With a cache, idx fills the next T slots of every row (see KVCache). With ``segments``
        (B, T) ids, a row holds several packed sequences: each token attends only to earlier
        tokens of its own segment, and positions restart at 0 where a segment starts, so every
        sequence gets exactly the logits it would get alone (training with packing).
        """
        B, T = idx.shape
        if segments is not None:
            if kv_cache is not None or segments.shape != idx.shape:
                raise ValueError("segments must be (B, T) like idx, and are for cache-free forwards")
            return self._forward_packed(idx, segments)
        pos0 = kv_cache.pos if kv_cache is not None else 0
        end = pos0 + T
        limit = min(self.cfg.max_seq_len, kv_cache.max_len) if kv_cache is not None else self.cfg.max_seq_len
        if end > limit:
            raise ContextOverflowError(
                f"sequence of {end} tokens exceeds the context window of {limit}",
                "shorten the prompt or lower max_tokens")
        if self.cfg.pos == "rope" and end > self._rope_len:
            self._build_rope(max(end, 2 * self._rope_len))
        if fast_decode.usable(self, idx, kv_cache):
            plan = fast_decode.plan_for(self)
            if plan is not None:  # batch-1 quantized decode: all blocks in one C++ call
                return self.lm_head(self.norm_f(fast_decode.step(self, plan, idx, kv_cache)))
        x = self.tok_emb(idx)  # (B, T, C)
        padded = kv_cache is not None and kv_cache.padded
        positions = kv_cache.positions(T) if padded else None  # (B, T), only when rows differ
        cos = sin = None
        if self.cfg.pos == "rope":
            if positions is None:
                cos, sin = self.rope_cos[pos0:end][None, None], self.rope_sin[pos0:end][None, None]  # (1, 1, T, D/2)
            else:
                cos, sin = self.rope_cos[positions][:, None], self.rope_sin[positions][:, None]  # (B, 1, T, D/2)
        else:
            pos_ids = positions if positions is not None else torch.arange(pos0, end, device=idx.device)
            x = x + self.pos_emb(pos_ids)
        x = self.drop(x)
        mask = self._mask(kv_cache, T, idx.device)
        for block in self.blocks:
            x = block(x, cos, sin, mask, kv_cache)
        if kv_cache is not None:
            kv_cache.advance(T)
        if last_only:
            x = x[:, -1:]
        return self.lm_head(self.norm_f(x))

    def _forward_packed(self, idx: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        if T > self.cfg.max_seq_len:
            raise ContextOverflowError(f"sequence of {T} tokens exceeds the context window of {self.cfg.max_seq_len}",
                                       "pack rows no longer than the window")
        ar = torch.arange(T, device=idx.device)
        starts = torch.ones_like(segments, dtype=torch.bool)
        starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
        first = torch.where(starts, ar, torch.zeros_like(ar)).cummax(dim=1).values  # (B, T) its segment's start
        positions = ar[None] - first
        x = self.tok_emb(idx)
        cos = sin = None
        if self.cfg.pos == "rope":
            if T > self._rope_len:
                self._build_rope(max(T, 2 * self._rope_len))
            cos, sin = self.rope_cos[positions][:, None], self.rope_sin[positions][:, None]  # (B, 1, T, D/2)
        else:
            x = x + self.pos_emb(positions)
        x = self.drop(x)
        same = segments[:, :, None] == segments[:, None, :]  # (B, T, T)
        mask = (same & torch.ones(T, T, dtype=torch.bool, device=idx.device).tril())[:, None]  # (B, 1, T, T)
        for block in self.blocks:
            x = block(x, cos, sin, mask, None)
        return self.lm_head(self.norm_f(x))

    @staticmethod
    def _mask(kv_cache: KVCache | None, T: int, device) -> torch.Tensor | None:
        """Boolean (B, 1, T, S) mask, or None when SDPA's own causal handling is exact."""
        if kv_cache is None or (not kv_cache.padded and (kv_cache.pos == 0 or T == 1)):
            return None
        pos0 = kv_cache.pos
        keys = torch.arange(pos0 + T, device=device)  # (S,)
        queries = torch.arange(pos0, pos0 + T, device=device)  # (T,)
        causal = keys[None, :] <= queries[:, None]  # (T, S)
        valid = keys[None, :] >= kv_cache.start[:, None]  # (B, S): left padding is invisible
        mask = causal[None] & valid[:, None, :]  # (B, T, S)
        # a pad query sees no real key; letting it see itself keeps its row finite (no NaN leaks)
        mask |= keys[None, None, :] == queries[None, :, None]
        return mask[:, None]

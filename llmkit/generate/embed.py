"""Text -> unit vectors: WordPiece (``tokenizers``) + our BERT encoder + mean pooling + L2 norm.

The default is the packaged all-MiniLM-L6-v2; its output matches sentence-transformers.
Batching sorts texts by token length so each batch pads to a similar length (padding is wasted
compute on CPU), then restores the caller's order.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from llmkit.core.errors import ModelNotFoundError
from llmkit.model.bert import BertConfig, BertEncoder, l2_normalize, load_hf_state_dict, mean_pool

DEFAULT_EMBEDDER = "minilm"
# Below this many tokens per call (a query, a few chunks) one thread is faster: splitting a (1, T)
# matmul across threads costs more in synchronisation than it saves, and on a busy machine a
# thread waiting for its descheduled sibling turned a 10 ms query into seconds (measured).
SMALL_CALL = 2048


@contextlib.contextmanager
def _threads(n: int | None):
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass
class Embedder:
    model: BertEncoder
    tokenizer: object  # tokenizers.Tokenizer with truncation set, no padding
    name: str
    max_length: int
    token_budget: int = 8192  # tokens per forward pass: caps the (B, T) batch whatever the lengths

    @property
    def dim(self) -> int:
        return self.model.cfg.d_model

    def encode_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def batches(self, lengths: Sequence[int], batch_size: int) -> list[list[int]]:
        """Index groups of similar length, longest first, each within batch_size and token_budget."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        groups, cur = [], []
        for i in order:
            # the first item of a group is its longest, so the padded size is len(cur)+1 times that
            if cur and (len(cur) >= batch_size or (len(cur) + 1) * lengths[cur[0]] > self.token_budget):
                groups.append(cur)
                cur = []
            cur.append(i)
        return groups + ([cur] if cur else [])

    def embed(self, texts: Sequence[str], batch_size: int = 64,
              progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(N,) strings -> (N, dim) float32 unit vectors, in input order."""
        return self.embed_ids(self.encode_ids(texts) if len(texts) else [], batch_size, progress)

    @torch.inference_mode()
    def embed_ids(self, ids: Sequence[Sequence[int]], batch_size: int = 64,
                  progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(N,) WordPiece id lists (with [CLS] ... [SEP]) -> (N, dim) float32 unit vectors, in input order."""
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        if len(ids):
            with _threads(1 if sum(len(x) for x in ids) < SMALL_CALL else None):
                self._run(ids, out, batch_size, progress)
        return out

    def _run(self, ids: Sequence[Sequence[int]], out: np.ndarray, batch_size: int, progress) -> None:
        for group in self.batches([len(x) for x in ids], batch_size):
            T = len(ids[group[0]])
            batch = torch.zeros(len(group), T, dtype=torch.long)  # pad id 0 = [PAD]
            mask = torch.zeros(len(group), T, dtype=torch.long)
            for row, i in enumerate(group):
                batch[row, : len(ids[i])] = torch.tensor(ids[i])
                mask[row, : len(ids[i])] = 1
            hidden = self.model(batch, mask)  # (B, T, C)
            out[group] = l2_normalize(mean_pool(hidden, mask)).numpy()
            if progress:
                progress(len(group))

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


def _model_dir(spec: str | os.PathLike) -> Path:
    if str(spec) == DEFAULT_EMBEDDER:
        from llmkit.core.assets import asset_path

        return asset_path(DEFAULT_EMBEDDER).parent
    path = Path(spec)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise ModelNotFoundError(f"embedder {str(spec)!r} is not a directory with config.json and model.safetensors",
                                 f"use {DEFAULT_EMBEDDER!r} (the packaged all-MiniLM-L6-v2) or a sentence-transformers "
                                 "BERT directory")
    return path


def load_embedder(spec: str | os.PathLike = DEFAULT_EMBEDDER) -> Embedder:
    """The packaged MiniLM (``"minilm"``) or a sentence-transformers BERT directory, on CPU, fp32."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    path = _model_dir(spec)
    cfg = BertConfig.from_hf(path / "config.json")
    model = load_hf_state_dict(BertEncoder(cfg), load_file(path / "model.safetensors")).eval()
    st_cfg = path / "sentence_bert_config.json"
    max_length = json.loads(st_cfg.read_text()).get("max_seq_length", 256) if st_cfg.is_file() else 256
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.no_padding()  # we pad per batch, to that batch's longest
    tok.enable_truncation(max_length)
    name = DEFAULT_EMBEDDER if str(spec) == DEFAULT_EMBEDDER else str(path.resolve())  # reloadable by name
    return Embedder(model, tok, name, max_length)


@functools.lru_cache(maxsize=2)
def cached_embedder(spec: str = DEFAULT_EMBEDDER) -> Embedder:
    """One embedder per process and spec: loading is cheap but not free, and the weights are read-only."""
    return load_embedder(spec)

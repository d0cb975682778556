"""Batches of (x, y) token windows from prepared shards: packed, shuffled, resumable, DDP-sharded.

    >>> loader = TokenLoader("data/stdlib", batch_size=8, seq_len=256)
    >>> x, y = next(loader)            # (8, 256) int64 each; y[:, t] == x[:, t + 1]
    >>> state = loader.state_dict()    # small JSON-able dict, saved with the checkpoint
    >>> loader2 = TokenLoader("data/stdlib", batch_size=8, seq_len=256)
    >>> loader2.load_state_dict(state) # next(loader2) is the batch next(loader) would give

**Packing.** A split is one token stream (its shards glued end to end; documents
are separated by the BOS/EOS tokens ``prepare`` put in). An epoch cuts it into
windows of ``seq_len + 1`` tokens that overlap by one, starting at a random
offset in ``[0, seq_len)``, so every token is a target exactly once per epoch
and the cut points move between epochs. Windows ignore document boundaries:
no padding, no wasted compute.

**Order.** Epoch ``e`` visits its windows in ``permutation(seed, e)``: a pure
function of the seed and the epoch number. The whole position is therefore
``(epoch, cursor)`` — which makes resume exact without saving any RNG state.
The tail of an epoch that does not fill a global batch is dropped. (The
permutation comes from NumPy's PCG64 generator: resume with the same NumPy
major version that started the run.)

**DDP.** A global batch is ``batch_size × world_size`` consecutive windows of
the order; rank ``r`` takes rows ``[r·B, (r+1)·B)``. Stacking the ranks'
batches gives exactly the batch one process with ``batch_size × world_size``
would see, so a run's data does not depend on how many GPUs it had — and a
state saved with one world size resumes with another of the same global batch.

**Memory.** Shards are opened with ``np.memmap``: only the windows of the
current batch are read, so the split may be far larger than RAM.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmkit.data.errors import DataError
from llmkit.data.shards import read_index

if TYPE_CHECKING:
    import torch

STATE_FORMAT = 1
_DTYPES = {"uint16": "<u2", "uint32": "<u4"}


class TokenStream:
    """One split of a data directory as a single read-only array of token ids, backed by memmaps."""

    def __init__(self, data_dir: str | os.PathLike, split: str = "train", index: dict | None = None):
        self.data_dir = Path(data_dir)
        self.index = index if index is not None else read_index(self.data_dir)
        if split not in self.index["splits"]:
            raise DataError(f"split {split!r} is not in {str(self.data_dir)!r}",
                            f"use one of {sorted(self.index['splits'])}")
        self.split = split
        info = self.index["splits"][split]
        dtype = np.dtype(_DTYPES[self.index["dtype"]])
        shards = [s for s in info["shards"] if s["tokens"] > 0]  # np.memmap cannot map an empty file
        self.shards = [np.memmap(self.data_dir / s["file"], dtype=dtype, mode="r", shape=(s["tokens"],))
                       for s in shards]
        self.starts = [0]  # starts[i]: global position of shard i's first token
        for s in shards:
            self.starts.append(self.starts[-1] + s["tokens"])
        self.docs, self.bytes = info["docs"], info["bytes"]

    def __len__(self) -> int:
        return self.starts[-1]

    @property
    def bytes_per_token(self) -> float:
        """UTF-8 bytes of text per token in this split (boundary tokens count as tokens with no bytes)."""
        return self.bytes / len(self) if len(self) else float("nan")

    def window(self, start: int, length: int) -> np.ndarray:
        """A copy of ids ``[start, start + length)``, reading across shard ends if needed."""
        assert 0 <= start and start + length <= len(self), (start, length, len(self))
        i = bisect.bisect_right(self.starts, start) - 1
        pieces = []
        while length > 0:
            lo = start - self.starts[i]
            piece = self.shards[i][lo:lo + length]  # a memmap slice: only these pages are read
            pieces.append(piece)
            start, length, i = start + len(piece), length - len(piece), i + 1
        return np.concatenate(pieces) if len(pieces) > 1 else np.array(pieces[0])


def _xy(rows: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    import torch  # here, not at the top: `llmkit data prepare` should not pay for importing torch

    buf = torch.from_numpy(np.stack(rows).astype(np.int64))  # (B, T+1)
    return buf[:, :-1].contiguous(), buf[:, 1:].contiguous()  # x, y: (B, T); y is x shifted left by one


def _check_sizes(batch_size: int, seq_len: int, rank: int, world_size: int) -> None:
    if batch_size <= 0 or seq_len <= 0:
        raise DataError(f"batch_size={batch_size} and seq_len={seq_len} must be positive", "use e.g. 8 and 256")
    if world_size <= 0 or not 0 <= rank < world_size:
        raise DataError(f"rank={rank} is not in [0, world_size={world_size})",
                        "pass the process's rank and the number of processes (torchrun sets RANK/WORLD_SIZE)")


class TokenLoader:
    """Endless iterator of ``(x, y)`` int64 batches of shape (batch_size, seq_len) from one split."""

    def __init__(self, data_dir: str | os.PathLike, split: str = "train", batch_size: int = 8, seq_len: int = 256,
                 rank: int = 0, world_size: int = 1, seed: int = 0, shuffle: bool = True):
        _check_sizes(batch_size, seq_len, rank, world_size)
        self.stream = TokenStream(data_dir, split)
        self.index = self.stream.index
        self.split, self.batch_size, self.seq_len = split, batch_size, seq_len
        self.rank, self.world_size, self.seed, self.shuffle = rank, world_size, seed, shuffle
        self.global_batch = batch_size * world_size
        need = self.global_batch * seq_len + 1
        if len(self.stream) < need:
            raise DataError(f"split {split!r} of {str(data_dir)!r} has {len(self.stream)} tokens, fewer than one "
                            f"global batch needs ({self.global_batch} × {seq_len} + 1 = {need})",
                            "use more text, a smaller batch_size/seq_len, or fewer processes")
        self.epoch, self.cursor = 0, 0  # cursor: windows of the epoch's order already handed out (all ranks)
        self._plan: tuple[int, int, np.ndarray] | None = None

    # ---- the order: a pure function of (seed, epoch) ----------------------------------------

    def plan(self, epoch: int) -> tuple[int, np.ndarray]:
        """(offset, order) of an epoch: windows start at ``offset + order[k] * seq_len``."""
        if self._plan is None or self._plan[0] != epoch:
            T, n = self.seq_len, len(self.stream)
            # The offset may not push the window count below one global batch (small corpora).
            max_offset = min(T, n - 1 - self.global_batch * T + 1)
            if self.shuffle:
                rng = np.random.default_rng([self.seed, epoch])
                offset = int(rng.integers(max_offset))
                order = rng.permutation((n - 1 - offset) // T)
            else:
                offset, order = 0, np.arange((n - 1) // T)
            self._plan = (epoch, offset, order)
        return self._plan[1], self._plan[2]

    @property
    def batches_per_epoch(self) -> int:
        return len(self.plan(self.epoch)[1]) // self.global_batch

    @property
    def bytes_per_token(self) -> float:
        """UTF-8 bytes per token of this split, from the index (for bits per byte)."""
        return self.stream.bytes_per_token

    # ---- iteration --------------------------------------------------------------------------

    def __iter__(self) -> TokenLoader:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        offset, order = self.plan(self.epoch)
        if self.cursor + self.global_batch > len(order):  # drop the epoch's ragged tail
            self.epoch, self.cursor = self.epoch + 1, 0
            offset, order = self.plan(self.epoch)
        lo = self.cursor + self.rank * self.batch_size
        mine = order[lo:lo + self.batch_size]  # this rank's rows of the global batch
        self.cursor += self.global_batch
        T = self.seq_len
        return _xy([self.stream.window(offset + int(k) * T, T + 1) for k in mine])

    # ---- exact resume -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Position after the last batch handed out; JSON-able, identical on every rank."""
        return {"format": STATE_FORMAT, "split": self.split, "epoch": self.epoch, "cursor": self.cursor,
                "seed": self.seed, "shuffle": self.shuffle, "seq_len": self.seq_len,
                "global_batch": self.global_batch, "tokens": len(self.stream),
                "tokenizer_sha256": self.index["tokenizer"]["sha256"]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where ``state`` was saved. Anything that changes the order is refused."""
        if state.get("format") != STATE_FORMAT:
            raise DataError(f"loader state format {state.get('format')!r} is not {STATE_FORMAT}",
                            "resume with the llmkit version that saved it")
        mine = self.state_dict()
        for key in ("split", "seed", "shuffle", "seq_len", "global_batch", "tokens", "tokenizer_sha256"):
            if state.get(key) != mine[key]:
                raise DataError(f"cannot resume the data position: {key} was {state.get(key)!r}, now {mine[key]!r}",
                                "resume with the same data directory, seed, seq_len and batch_size × world_size")
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])


def val_batches(data_dir: str | os.PathLike, batch_size: int, seq_len: int, split: str = "val",
                rank: int = 0, world_size: int = 1, max_batches: int | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One deterministic pass over a split (for eval loss and bits per byte).

    Windows start at 0 and step by ``seq_len``, in order, so every token after
    the first is a target exactly once. Global batches are sharded over ranks
    like in ``TokenLoader``; the last global batch may be short, so a rank can
    get one batch fewer than rank 0 — sum losses and token counts, then
    all-reduce once, rather than reducing per batch. ``max_batches`` caps the
    number of global batches (a fixed eval budget).
    """
    _check_sizes(batch_size, seq_len, rank, world_size)
    stream = TokenStream(data_dir, split)
    n_windows = max(len(stream) - 1, 0) // seq_len
    if n_windows == 0:
        raise DataError(f"split {split!r} of {str(data_dir)!r} has {len(stream)} tokens, not one window of "
                        f"{seq_len} + 1", "use a smaller seq_len, or a larger --val-fraction when preparing")
    G = batch_size * world_size
    n_global = math.ceil(n_windows / G)
    if max_batches is not None:
        n_global = min(n_global, max_batches)
    for g in range(n_global):
        lo = g * G + rank * batch_size
        hi = min(lo + batch_size, n_windows)
        if lo >= hi:
            return
        yield _xy([stream.window(k * seq_len, seq_len + 1) for k in range(lo, hi)])

"""Batches of fine-tuning examples: right padding with ignored targets (or packing with segment ids),
and a resumable shuffled loader.

    x = ids[:-1], y = ids[1:] with y = -100 wherever the next token is not an answer token

Rows are right-padded: under a causal mask a real token never attends to a
pad that comes after it, so padding needs no attention mask, and pad targets
are -100 (ignored by the loss). The loader's position is (epoch, cursor) over
a permutation that is a pure function of (seed, epoch), so resume is exact.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from llmkit.data.chat_data import Completion
from llmkit.data.errors import DataError

IGNORE = -100  # == llmkit.train.losses.IGNORE


def shift_targets(ids: Sequence[int], mask: Sequence[int]) -> tuple[list[int], list[int]]:
    """(inputs, targets): targets[t] = ids[t+1] where mask[t+1] else IGNORE."""
    return list(ids[:-1]), [t if m else IGNORE for t, m in zip(ids[1:], mask[1:])]


def pad_rows(rows: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[(inputs, targets)] -> x (B, T) padded with pad_id, y (B, T) padded with IGNORE."""
    T = max(len(x) for x, _ in rows)
    x = torch.full((len(rows), T), pad_id, dtype=torch.long)
    y = torch.full((len(rows), T), IGNORE, dtype=torch.long)
    for i, (xi, yi) in enumerate(rows):
        x[i, :len(xi)] = torch.tensor(xi, dtype=torch.long)
        y[i, :len(yi)] = torch.tensor(yi, dtype=torch.long)
    return x, y


def collate_sft(batch: list[tuple[list[int], list[int]]], pad_id: int):
    """SFT: [(ids, assistant mask)] -> (x, y)."""
    return pad_rows([shift_targets(ids, mask) for ids, mask in batch], pad_id)


def pack_rows(rows: list[tuple[list[int], list[int]]], max_len: int,
              pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pack (inputs, targets) rows into as few rows of at most max_len tokens as first-fit
    decreasing finds; -> x, y, segments (B, T), segment ids 1.. per packed example, 0 on padding.

    The model (``Transformer.forward(x, segments=...)``) keeps the examples apart: attention stays
    inside a segment and positions restart, so packed examples train exactly as padded ones do,
    without the compute spent on pads.
    """
    bins: list[list[int]] = []  # example indices per packed row
    room: list[int] = []
    for i in sorted(range(len(rows)), key=lambda i: -len(rows[i][0])):
        n = len(rows[i][0])
        if n > max_len:
            raise DataError(f"an example of {n} tokens does not fit a packed row of {max_len}",
                            "raise max_len or truncate the examples first")
        j = next((b for b, r in enumerate(room) if r >= n), None)
        if j is None:
            bins.append([])
            room.append(max_len)
            j = len(bins) - 1
        bins[j].append(i)
        room[j] -= n
    T = max(max_len - r for r in room)
    x = torch.full((len(bins), T), pad_id, dtype=torch.long)
    y = torch.full((len(bins), T), IGNORE, dtype=torch.long)
    seg = torch.zeros((len(bins), T), dtype=torch.long)
    for b, members in enumerate(bins):
        at = 0
        for s, i in enumerate(sorted(members), 1):  # original order inside a row
            xi, yi = rows[i]
            x[b, at:at + len(xi)] = torch.tensor(xi, dtype=torch.long)
            y[b, at:at + len(yi)] = torch.tensor(yi, dtype=torch.long)
            seg[b, at:at + len(xi)] = s
            at += len(xi)
    return x, y, seg


def collate_sft_packed(batch: list[tuple[list[int], list[int]]], pad_id: int, max_len: int):
    """SFT with packing: [(ids, assistant mask)] -> (x, y, segments), see pack_rows."""
    return pack_rows([shift_targets(ids, mask) for ids, mask in batch], max_len, pad_id)


def completion_rows(items: list[Completion]) -> list[tuple[list[int], list[int]]]:
    """Targets only on the answer's masked tokens (the prompt never carries loss)."""
    return [shift_targets(c.ids, [0] * len(c.prompt) + c.mask) for c in items]


def collate_pairs(batch: list[tuple[Completion, Completion]], pad_id: int):
    """Preference pairs -> one (2B, T) batch: rows [0, B) chosen, [B, 2B) rejected (one forward for both)."""
    rows = completion_rows([c for c, _ in batch]) + completion_rows([r for _, r in batch])
    return pad_rows(rows, pad_id)


def collate_unpaired(batch: list[tuple[Completion, bool]], pad_id: int):
    """KTO: rows [0, B) the completions, rows [B, 2B) mismatched pairs (prompt i + answer i+1) for the KL point."""
    items = [c for c, _ in batch]
    shifted = [Completion(c.prompt, items[(i + 1) % len(items)].answer, items[(i + 1) % len(items)].mask)
               for i, c in enumerate(items)]
    x, y = pad_rows(completion_rows(items) + completion_rows(shifted), pad_id)
    return x, y, torch.tensor([d for _, d in batch], dtype=torch.bool)


class ExampleLoader:
    """Shuffled batches of examples, endless over epochs, DDP-sharded, with an exact-resume state.

    A global batch is ``batch_size × world_size`` consecutive examples of the
    epoch's order; rank r takes its slice. The tail that does not fill a global
    batch is dropped.
    """

    def __init__(self, examples: Sequence[Any], batch_size: int, collate: Callable[[list], Any], seed: int = 0,
                 rank: int = 0, world_size: int = 1, shuffle: bool = True):
        if len(examples) < batch_size * world_size:
            raise DataError(f"{len(examples)} examples cannot fill a batch of {batch_size * world_size}",
                            "lower batch_size or add data")
        self.examples, self.batch_size, self.collate = examples, batch_size, collate
        self.seed, self.rank, self.world, self.shuffle = seed, rank, world_size, shuffle
        self.epoch, self.cursor = 0, 0

    def _order(self, epoch: int) -> np.ndarray:
        n = len(self.examples)
        if not self.shuffle:
            return np.arange(n)
        return np.random.Generator(np.random.PCG64([self.seed, epoch])).permutation(n)

    def __iter__(self):
        return self

    def __next__(self):
        glob = self.batch_size * self.world
        if self.cursor + glob > len(self.examples):
            self.epoch, self.cursor = self.epoch + 1, 0
        order = self._order(self.epoch)
        start = self.cursor + self.rank * self.batch_size
        batch = [self.examples[int(i)] for i in order[start:start + self.batch_size]]
        self.cursor += glob
        return self.collate(batch)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor, "n": len(self.examples)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("n", len(self.examples)) != len(self.examples):
            raise DataError(f"the checkpoint was trained on {state['n']} examples, the data now has "
                            f"{len(self.examples)}", "resume with the same data, or start a new out_dir")
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])


def eval_batches(examples: Sequence[Any], batch_size: int, collate: Callable[[list], Any]):
    """A fresh pass over the examples in order (for validation)."""
    for i in range(0, len(examples) - batch_size + 1, batch_size):
        yield collate(list(examples[i:i + batch_size]))

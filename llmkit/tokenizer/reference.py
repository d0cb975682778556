"""The reference BPE engine: slow, obviously HF-correct, kept as the oracle.

HF semantics (``tokenizers`` BPE model): within one pre-tokenized piece, start
from one symbol per byte and repeatedly merge the adjacent pair with the
lowest merge rank, leftmost first, until no adjacent pair has a merge::

    merges: (h,e)=0, (l,l)=1, (he,ll)=2         "hello" -> h e l l o
    -> he l l o -> he ll o -> hell o             (no merge for (hell,o): done)

Bytes with no token of their own are dropped, as HF does when the model has no
``unk_token`` (SmolLM2 lacks a few control bytes, e.g. 0x04).
"""

from __future__ import annotations

import regex

from llmkit.tokenizer.pretokenize import compile_patterns, split_pieces

Merge = tuple[int, int, int]  # (left id, right id, merged id), listed in rank order
_CACHE_LIMIT = 200_000  # pieces; cleared when full so memory stays bounded


def single_byte_ids(token_bytes: list[bytes | None], special_ids: set[int]) -> list[int | None]:
    """byte value -> id of the ordinary token that is exactly that byte (None if the vocab lacks it)."""
    table: list[int | None] = [None] * 256
    for i, b in enumerate(token_bytes):
        if b is not None and len(b) == 1 and i not in special_ids and table[b[0]] is None:
            table[b[0]] = i
    return table


def derive_merges(ranks: dict[bytes, int]) -> tuple[list[Merge], list[int]]:
    """Recover merges from a tiktoken rank table (which stores none).

    A token's merge is the last step of BPE on its own bytes using only tokens
    ranked below it: that run must end in exactly two parts. Tokens it cannot
    build are returned separately (tiktoken still emits them when a whole piece
    equals them; see ``ignore_merges``).

        ranks {a:0, b:1, c:2, ab:3, abc:4}  ->  merges [(a,b)->ab, (ab,c)->abc]
    """
    merges: list[Merge] = []
    unreachable: list[int] = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        parts = [token[i:i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best_rank, best_i = rank, -1
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and r < best_rank:
                    best_rank, best_i = r, i
            if best_i < 0:
                break
            parts[best_i:best_i + 2] = [parts[best_i] + parts[best_i + 1]]
        if len(parts) == 2 and parts[0] in ranks and parts[1] in ranks:
            merges.append((ranks[parts[0]], ranks[parts[1]], rank))
        else:
            unreachable.append(rank)
    return merges, unreachable


class PythonBPE:
    """Pure-Python byte-level BPE over token ids, with a per-piece cache."""

    name = "python"

    def __init__(self, token_bytes: list[bytes | None], special_ids: set[int], merges: list[Merge],
                 patterns: tuple[str, ...], ignore_merges: bool = False):
        self._compiled: tuple[regex.Pattern, ...] = compile_patterns(patterns)
        self._byte_ids = single_byte_ids(token_bytes, special_ids)
        # (left, right) -> (rank, merged); a later duplicate pair never wins, as in HF.
        self._pairs: dict[tuple[int, int], tuple[int, int]] = {}
        created: dict[int, int] = {}  # merged id -> rank at which it first appears
        for rank, (a, b, new) in enumerate(merges):
            self._pairs.setdefault((a, b), (rank, new))
            created.setdefault(new, rank)
        well_formed = all(created.get(a, -1) < rank and created.get(b, -1) < rank
                          for rank, (a, b, _) in enumerate(merges))
        # Merging every occurrence of the best pair in one sweep equals HF's
        # one-at-a-time order only if a merge never uses a token made by a later
        # one (a fresh pair then always ranks below the current). Trained merge
        # lists are like that; anything else takes the slow exact loop.
        self._sweep = well_formed
        self._whole: dict[bytes, int] | None = None
        if ignore_merges:  # HF ignore_merges / tiktoken: a piece that *is* a token maps straight to it
            self._whole = {b: i for i, b in enumerate(token_bytes)
                           if b is not None and i not in special_ids}
        self._cache: dict[str, list[int]] = {}

    def bpe(self, piece: str) -> list[int]:
        """Token ids of one pre-tokenized piece."""
        data = piece.encode("utf-8")
        if self._whole is not None and data in self._whole:
            return [self._whole[data]]
        byte_ids = self._byte_ids
        ids = [byte_ids[b] for b in data if byte_ids[b] is not None]
        pairs = self._pairs
        while len(ids) > 1:
            best, best_i = None, -1
            for i in range(len(ids) - 1):
                hit = pairs.get((ids[i], ids[i + 1]))
                if hit is not None and (best is None or hit[0] < best[0]):
                    best, best_i = hit, i
            if best is None:
                break
            left, right = ids[best_i], ids[best_i + 1]
            if not self._sweep:
                ids[best_i:best_i + 2] = [best[1]]
                continue
            out, i = ids[:best_i], best_i  # everything left of the leftmost hit is untouched
            while i < len(ids):
                if i + 1 < len(ids) and ids[i] == left and ids[i + 1] == right:
                    out.append(best[1])
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            ids = out
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of text that contains no special tokens."""
        cache, out = self._cache, []
        for piece in split_pieces(self._compiled, text):
            ids = cache.get(piece)
            if ids is None:
                ids = self.bpe(piece)
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[piece] = ids
            out.extend(ids)
        return out

    encode_chunk = encode_ordinary  # no vocab gaps to route around: bpe() drops missing bytes

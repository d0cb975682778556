"""Byte-level BPE training: count pre-split chunks once, then merge with a heap.

    >>> tok = train_bpe(["low lower lowest", "new newer newest"], vocab_size=256 + 4 + 1, pattern="gpt2")
    >>> [tok.decode([i]) for i in range(256, 260)]   # 4 merges: "we" is in 4 chunks, then 3-way ties
    ['we', 'lo', 'ne', 'st']
    >>> tok.decode(tok.encode(" newer lower")) == " newer lower"
    True

The algorithm (the one HF ``tokenizers`` BpeTrainer uses):

1. Split every text with the pre-tokenizer regex and count the unique chunks
   (``count_chunks``; streams over the texts, in worker processes for big corpora).
   Merges never cross a chunk, so a 30 MB corpus becomes ~100k weighted words.
2. Count adjacent token pairs once, weighted by chunk frequency, and remember
   which words hold each pair. Put the counts in a max-heap.
3. Pop the most frequent pair, give it the next id, and rewrite only the words
   that hold it. Each rewrite changes the counts of the pairs around each
   occurrence: those are updated in place and the new pairs pushed. Entries
   whose count went stale are fixed when popped (lazy deletion).

Ties are broken deterministically: the higher count wins, then the smaller
(left, right) pair of *tie ranks*. A merged token's tie rank is its id; a
single byte's is the position of its printable GPT-2 spelling in code-point
order, which is how HF BpeTrainer numbers its alphabet. With this rule we learn
exactly HF BpeTrainer's merges (a test checks it).

Every token has exactly one merge, so the vocab is also a tiktoken rank file
with the same ids (tiktoken merges by token rank, not by merge list). Starting
from bytes, two adjacent tokens never spell an existing token (it would have
been merged when it was made), so this holds by construction; a pair that did
(``ab`` + ``c`` after ``a`` + ``bc``) would be skipped, never given a second id.

``learn_merges_reference`` is the slow, obviously correct version: it
recounts every pair before each merge. Tests check both learn the same merges.

Words are held as ``str`` with one character per token id (``chr(id)``): a
merge is then ``str.replace`` and a pair lookup ``pair in word``, both in C.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

import numpy as np

from llmkit.core.errors import TokenizerError
from llmkit.tokenizer.bpe import Tokenizer
from llmkit.tokenizer.bytelevel import byte_to_char, bytes_to_token
from llmkit.tokenizer.chunks import Pattern, count_chunks, encodable, progress_bar, resolve_pattern
from llmkit.tokenizer.pretokenize import compile_patterns, resolve, split_pieces

__all__ = ["Merges", "build_tokenizer", "count_chunks", "learn_merges", "learn_merges_reference", "merge_pair",
           "resolve_pattern", "train_bpe", "train_bpe_reference"]

Merges = list[tuple[int, int]]  # (left id, right id); merge i creates id 256 + i
MAX_VOCAB = 0x110000  # words hold one character per token id
_SHIFT = 21  # heap keys pack (-count, left tie rank, right tie rank) into one int; ranks < 2**21
_MASK = (1 << _SHIFT) - 1


# ---- validation --------------------------------------------------------------------------------

def check_vocab_size(vocab_size: int, special_tokens: Sequence[str]) -> None:
    minimum = 256 + len(special_tokens)
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < minimum:
        raise TokenizerError(f"vocab_size={vocab_size!r} is below the minimum {minimum} "
                             f"(256 byte tokens + {len(special_tokens)} special tokens)",
                             f"pass a vocab size of at least {minimum}")
    if vocab_size > MAX_VOCAB:
        raise TokenizerError(f"vocab_size={vocab_size} is above the maximum {MAX_VOCAB}", "pass a smaller vocab size")
    if len(set(special_tokens)) != len(special_tokens) or not all(isinstance(s, str) and s for s in special_tokens):
        raise TokenizerError(f"special tokens {list(special_tokens)!r} must be distinct non-empty strings",
                             "remove duplicates and empty strings")


# ---- step 2-3: learn merges ----------------------------------------------------------------------

@lru_cache(maxsize=1)
def byte_tie_ranks() -> tuple[list[int], list[int]]:
    """(byte -> tie rank, tie rank -> byte): bytes ordered by their printable GPT-2 character."""
    chars = byte_to_char()
    order = sorted(range(256), key=lambda b: chars[b])
    ranks = [0] * 256
    for r, b in enumerate(order):
        ranks[b] = r
    return ranks, order


def _words(chunk_counts: Mapping[str, int]) -> tuple[list[str], list[int]]:
    """Chunks of two or more bytes as str with one char per byte (latin-1 maps byte b to chr(b))."""
    words, freqs = [], []
    for chunk, n in chunk_counts.items():
        data = chunk.encode("utf-8")
        if len(data) > 1 and n > 0:
            words.append(data.decode("latin-1"))
            freqs.append(int(n))
    return words, freqs


def _initial_pairs(words: list[str], freqs: list[int]) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Weighted counts of every adjacent byte pair, and the words holding each (vectorized)."""
    lens = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    flat = np.frombuffer("".join(words).encode("latin-1"), dtype=np.uint8)
    has_right = np.ones(len(flat) - 1, dtype=bool)
    has_right[np.cumsum(lens)[:-1] - 1] = False  # a word's last byte pairs with nothing
    pos = np.flatnonzero(has_right)
    code = flat[pos].astype(np.int64) * 256 + flat[pos + 1]  # pair (a, b) as a * 256 + b
    owner = np.repeat(np.arange(len(words), dtype=np.int32), lens)[pos]
    weight = np.asarray(freqs, dtype=np.float64)[owner]  # float64 sums are exact below 2**53
    totals = np.bincount(code, weights=weight, minlength=65536)
    keys = np.sort(code * len(words) + owner)  # np.sort, not np.unique: much faster here
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    pair_codes, owners = keys // len(words), (keys % len(words)).tolist()
    starts = np.flatnonzero(np.concatenate(([True], pair_codes[1:] != pair_codes[:-1]))).tolist()
    counts: dict[str, int] = {}
    where: dict[str, list[int]] = {}
    for start, stop in zip(starts, starts[1:] + [len(owners)]):
        c = int(pair_codes[start])
        pair = chr(c >> 8) + chr(c & 255)
        counts[pair] = int(totals[c])
        where[pair] = owners[start:stop]  # distinct word indices
    return counts, where


def learn_merges(chunk_counts: Mapping[str, int], n_merges: int, progress: bool = False) -> Merges:
    """Up to ``n_merges`` merges from chunk counts: the heap + incremental-update trainer."""
    words, freqs = _words(chunk_counts)
    if n_merges <= 0 or not words:
        return []
    byte_rank, rank_byte = byte_tie_ranks()
    rank = byte_rank + list(range(256, 256 + n_merges))  # id -> tie rank
    ident = rank_byte + list(range(256, 256 + n_merges))  # tie rank -> id
    counts, where = _initial_pairs(words, freqs)
    heap = [(-n << 2 * _SHIFT) | (rank[ord(p[0])] << _SHIFT) | rank[ord(p[1])] for p, n in counts.items()]
    heapq.heapify(heap)
    token_bytes = [bytes([i]) for i in range(256)]
    known = set(token_bytes)
    merges: Merges = []
    pop, push = heapq.heappop, heapq.heappush
    with progress_bar(progress, n_merges, "merge", "merge") as bar:
        while heap and len(merges) < n_merges:
            top = pop(heap)
            ra, rb = (top >> _SHIFT) & _MASK, top & _MASK
            a, b = ident[ra], ident[rb]
            pair = chr(a) + chr(b)
            count = counts.get(pair, 0)
            if count != -(top >> 2 * _SHIFT):  # stale entry: re-file it under its current count
                if count > 0:
                    push(heap, (-count << 2 * _SHIFT) | (ra << _SHIFT) | rb)
                continue
            joined = token_bytes[a] + token_bytes[b]
            if joined in known:  # another merge already makes these bytes: never merge this pair
                continue
            new_id = len(token_bytes)
            token_bytes.append(joined)
            known.add(joined)
            merges.append((a, b))
            new_counts = _apply_merge(pair, chr(new_id), words, freqs, counts, where)
            for p, n in new_counts.items():  # every new pair holds the new token, so none is in the heap yet
                counts[p] = n
                push(heap, (-n << 2 * _SHIFT) | (rank[ord(p[0])] << _SHIFT) | rank[ord(p[1])])
            if len(merges) % 256 == 0:
                bar.update(256)
        bar.update(len(merges) % 256)
    return merges


def _apply_merge(pair: str, new: str, words: list[str], freqs: list[int], counts: dict[str, int],
                 where: dict[str, list[int]]) -> dict[str, int]:
    """Rewrite the words holding ``pair`` and update ``counts``/``where``; returns new pairs' counts.

    Around each occurrence ``L a b R`` -> ``L X R`` the pairs (L, a) and (b, R) lose the
    word's frequency and (L, X), (X, R) gain it. Two adjacent occurrences ``a b a b`` share
    the middle pair (b, a), which must be counted once: it is handled as the right side of
    the first occurrence, and the second one's left side is skipped (its left is X).
    """
    a, b = pair
    ba = b + a
    added: dict[str, int] = {}
    added_where: dict[str, list[int]] = {}  # one word's pairs are added together: dedupe against the last
    for wi in where.pop(pair):
        word = words[wi]
        if pair not in word:  # where-lists are supersets: the pair left this word earlier
            continue
        f = freqs[wi]
        word = words[wi] = word.replace(pair, new)  # left to right, non-overlapping: BPE's rule
        n = len(word)
        k = word.find(new)
        while k >= 0:
            if k > 0:
                left = word[k - 1]
                if left != new:
                    counts[left + a] -= f
                    p = left + new
                    if p in added:
                        added[p] += f
                        ws = added_where[p]
                        if ws[-1] != wi:
                            ws.append(wi)
                    else:
                        added[p] = f
                        added_where[p] = [wi]
            if k + 1 < n:
                right = word[k + 1]
                counts[ba if right == new else b + right] -= f
                p = new + right
                if p in added:
                    added[p] += f
                    ws = added_where[p]
                    if ws[-1] != wi:
                        ws.append(wi)
                else:
                    added[p] = f
                    added_where[p] = [wi]
            k = word.find(new, k + 1)
    del counts[pair]  # with a == b, "a a a" also decremented it above; it is gone from every word now
    where.update(added_where)
    return added


def learn_merges_reference(chunk_counts: Mapping[str, int], n_merges: int) -> Merges:
    """The oracle: recount every pair of every word before each merge (slow, obviously right)."""
    byte_rank, _ = byte_tie_ranks()

    def tie_rank(token: int) -> int:
        return byte_rank[token] if token < 256 else token

    words = [(list(chunk.encode("utf-8")), n) for chunk, n in chunk_counts.items() if n > 0]
    token_bytes = [bytes([i]) for i in range(256)]
    merges: Merges = []
    while len(merges) < n_merges:
        stats: Counter[tuple[int, int]] = Counter()
        for ids, n in words:
            for pair in itertools.pairwise(ids):
                stats[pair] += n
        # A pair whose bytes already are a token is never merged (see the module docstring).
        candidates = [p for p in stats if token_bytes[p[0]] + token_bytes[p[1]] not in token_bytes]
        if not candidates:
            break
        best = min(candidates, key=lambda p: (-stats[p], tie_rank(p[0]), tie_rank(p[1])))
        new_id = len(token_bytes)
        token_bytes.append(token_bytes[best[0]] + token_bytes[best[1]])
        merges.append(best)
        words = [(merge_pair(ids, best, new_id), n) for ids, n in words]
    return merges


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace each (a, b) in ``ids``, left to right: merge_pair([1, 1, 1], (1, 1), 9) == [9, 1]."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


# ---- the trained tokenizer -----------------------------------------------------------------------

def build_tokenizer(merges: Merges, pattern: Pattern = "gpt4",
                    special_tokens: Sequence[str] = ("<|endoftext|>",)) -> Tokenizer:
    """A Tokenizer: ids 0..255 are bytes, 256.. the merges in order, then the special tokens."""
    token_bytes = [bytes([i]) for i in range(256)]
    for a, b in merges:
        token_bytes.append(token_bytes[a] + token_bytes[b])
    spellings = [bytes_to_token(t) for t in token_bytes]
    specials = {s: len(spellings) + i for i, s in enumerate(special_tokens)}
    eot = specials.get("<|endoftext|>")
    return Tokenizer(spellings, [(spellings[a], spellings[b]) for a, b in merges], pre=resolve_pattern(pattern)[0],
                     special_tokens=specials, bos_id=eot, eos_id=eot)


def train_bpe(texts: Iterable[str], vocab_size: int, pattern: Pattern = "gpt4",
              special_tokens: Sequence[str] = ("<|endoftext|>",), *, workers: int | None = None,
              progress: bool = False) -> Tokenizer:
    """Train a byte-level BPE tokenizer of ``vocab_size`` tokens (bytes + merges + specials).

    ``texts`` is any iterable of str, read once (a single str is one text). ``pattern`` names
    the pre-split regex (gpt4 = cl100k, the default; gpt2; llama3; ...) or is a regex or a list
    of regexes. The vocab is smaller than asked when the corpus runs out of pairs to merge.
    """
    special_tokens = tuple(special_tokens)
    check_vocab_size(vocab_size, special_tokens)
    resolve_pattern(pattern)  # fail on a bad pattern before reading the corpus
    counts = count_chunks(texts, pattern, workers=workers, progress=progress)
    merges = learn_merges(counts, vocab_size - 256 - len(special_tokens), progress=progress)
    return build_tokenizer(merges, pattern, special_tokens)


def train_bpe_reference(texts: Iterable[str], vocab_size: int, pattern: Pattern = "gpt4",
                        special_tokens: Sequence[str] = ("<|endoftext|>",)) -> Tokenizer:
    """``train_bpe`` done the slow, obvious way: HF-semantics split, full recount per merge."""
    special_tokens = tuple(special_tokens)
    check_vocab_size(vocab_size, special_tokens)
    pre = resolve_pattern(pattern)[0]
    compiled = compile_patterns(resolve(pre)[1])
    texts = [texts] if isinstance(texts, str) else texts
    counts: Counter[str] = Counter()
    for text in texts:
        if not isinstance(text, str):
            raise TokenizerError(f"training texts must be str, got {type(text).__name__}", "decode bytes first")
        counts.update(split_pieces(compiled, encodable(text)))
    if not counts:
        raise TokenizerError("the training corpus is empty", "pass at least one non-empty text")
    return build_tokenizer(learn_merges_reference(counts, vocab_size - 256 - len(special_tokens)),
                           pattern, special_tokens)

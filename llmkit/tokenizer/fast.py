"""The fast engine: the same BPE run by tiktoken's Rust core.

tiktoken knows no merge list. It ranks *tokens*, and within a piece merges the
adjacent pair whose concatenation has the lowest rank. HF ranks *pairs*. The two
agree when a token's rank orders it like the merge that creates it, so:

- ranks are token ids when the ids of merge results already grow in merge
  order (true for trained vocabs: ids are handed out as merges are learned), and
  tiktoken's output is then our ids with no per-token Python work;
- otherwise ranks follow merge order and a lookup table maps them back to ids.

A vocab tiktoken cannot express raises ``Incompatible`` (the caller falls back to
the reference engine): duplicate token bytes, a merge whose own bytes BPE back
to a different split, or missing UTF-8 continuation bytes. Missing *lead* or
ASCII bytes (SmolLM2 lacks 0x04, 0xF1, ...) are fine: texts containing such
characters go piece by piece through ``encode_chunk``, where HF's "drop the
byte" rule is applied by the reference engine.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable
from pathlib import Path

import regex

from llmkit.core.assets import cache_dir
from llmkit.tokenizer.pretokenize import compile_patterns, split_pieces
from llmkit.tokenizer.reference import Merge, PythonBPE, single_byte_ids


class Incompatible(Exception):
    """This vocab cannot run on tiktoken; the message says why."""


def missing_byte_chars(missing: list[int]) -> str | None:
    """A regex char class matching exactly the characters whose UTF-8 uses a missing byte.

    Bytes that never occur in UTF-8 (0xC0, 0xC1, 0xF5..0xFF) need nothing.
    A missing continuation byte (0x80..0xBF) would touch characters all over
    Unicode, so that raises Incompatible instead.
    """
    ranges: list[tuple[int, int]] = []
    for b in missing:
        if b < 0x80:
            ranges.append((b, b))
        elif b < 0xC0:
            raise Incompatible(f"the vocab has no token for continuation byte 0x{b:02X}")
        elif 0xC2 <= b <= 0xDF:  # 2-byte lead: 64 code points each
            lo = (b - 0xC0) << 6
            ranges.append((lo, lo + 0x3F))
        elif 0xE0 <= b <= 0xEF:  # 3-byte lead: 4096 code points each
            lo = (b - 0xE0) << 12
            ranges.append((max(lo, 0x800), lo + 0xFFF))
        elif 0xF0 <= b <= 0xF4:  # 4-byte lead
            lo = (b - 0xF0) << 18
            ranges.append((max(lo, 0x10000), min(lo + 0x3FFFF, 0x10FFFF)))
    if not ranges:
        return None
    # \x escapes keep the class valid for both `re` and `regex`, even for ']' or '-'.
    parts = [f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ranges]
    return "[" + "".join(parts) + "]"


def _tiktoken_split(token: bytes, ranks: dict[bytes, int], limit: int) -> list[bytes]:
    """tiktoken's BPE on one token's bytes, using only ranks below ``limit``."""
    parts = [token[i:i + 1] for i in range(len(token))]
    get = ranks.get
    while len(parts) > 2:
        best, best_i = limit, -1  # lowest rank wins, leftmost on ties (strict <)
        prev = parts[0]
        for i in range(1, len(parts)):
            cur = parts[i]
            r = get(prev + cur, limit)
            if r < best:
                best, best_i = r, i - 1
            prev = cur
        if best_i < 0:
            break
        parts[best_i:best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return parts


def _digest(token_bytes: list[bytes | None], merges: list[Merge], ignore_merges: bool) -> str:
    h = hashlib.sha256(b"llmkit-tiktoken-v1" + bytes([ignore_merges]))
    h.update(b"\x00".join(b"\x01" if b is None else b"\x02" + b for b in token_bytes))
    h.update(array("q", [x for m in merges for x in m]).tobytes())
    return h.hexdigest()[:32]


def _verified_marker(digest: str) -> Path:
    return cache_dir() / "tokenizers" / f"tiktoken-ok-{digest}"


def build_ranks(token_bytes: list[bytes | None], special_ids: set[int], merges: list[Merge] | None,
                ignore_merges: bool) -> tuple[dict[bytes, int], list[int] | None]:
    """tiktoken's ``mergeable_ranks`` and a rank -> id table (None when ranks are the ids)."""
    def bytes_of(i: int) -> bytes:
        b = token_bytes[i]
        assert b is not None
        return b

    if merges is None:  # a tiktoken rank file: ids are ranks by definition
        ranks = {b: i for i, b in enumerate(token_bytes) if b is not None and i not in special_ids}
        if len(ranks) != sum(1 for i, b in enumerate(token_bytes) if b is not None and i not in special_ids):
            raise Incompatible("two ordinary tokens have the same bytes")
        return ranks, None
    singles = [i for i in single_byte_ids(token_bytes, special_ids) if i is not None]
    results = [new for _, _, new in merges]
    if len(set(results)) != len(results):
        raise Incompatible("a token is produced by more than one merge")
    extra = []
    if ignore_merges:  # tokens no merge makes are still whole-piece hits
        made = set(singles) | set(results)
        extra = [i for i, b in enumerate(token_bytes)
                 if b is not None and i not in special_ids and i not in made]
    order = singles + results + extra
    # Single bytes never compete (tiktoken only ranks concatenations), so only
    # the order of merge results (and of whole-piece-only tokens after them) matters.
    if all(a < b for a, b in zip(results, results[1:])) and (not extra or not results or extra[0] > results[-1]):
        ranks = {bytes_of(i): i for i in order}
        table = None
    else:
        ranks = {bytes_of(i): r for r, i in enumerate(order)}
        table = order
    if len(ranks) != len(order):
        raise Incompatible("two ordinary tokens have the same bytes")
    # The property tiktoken needs: BPE on a merge result's own bytes, with the
    # tokens ranked below it, ends at exactly that merge's two halves. Checking all
    # merges costs ~0.5 s, so a vocab that passed once is remembered in the cache.
    digest = _digest(token_bytes, merges, ignore_merges)
    marker = _verified_marker(digest)
    if marker.is_file():
        return ranks, table
    for a, b, new in merges:
        whole = bytes_of(new)
        if whole != bytes_of(a) + bytes_of(b):
            raise Incompatible(f"merge result {whole!r} is not the concatenation of its parts")
        if len(whole) > 2 and _tiktoken_split(whole, ranks, ranks[whole]) != [bytes_of(a), bytes_of(b)]:
            raise Incompatible(f"token {whole!r} would be split differently by rank than by merge")
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass  # a read-only cache only costs the check next time
    return ranks, table


class TiktokenBPE:
    """BPE on tiktoken's ``CoreBPE``; ``encode_ordinary`` is the hot path."""

    name = "tiktoken"

    def __init__(self, token_bytes: list[bytes | None], special_ids: set[int], merges: list[Merge] | None,
                 patterns: tuple[str, ...], pat_str: str, ignore_merges: bool,
                 reference: Callable[[], PythonBPE]):
        try:
            import tiktoken
        except ImportError as e:  # pragma: no cover - exercised only without tiktoken
            raise Incompatible("tiktoken is not installed") from e
        ranks, self._table = build_ranks(token_bytes, special_ids, merges, ignore_merges)
        missing = [b for b, i in enumerate(single_byte_ids(token_bytes, special_ids)) if i is None]
        self.bad_chars = missing_byte_chars(missing)
        self._enc = tiktoken.Encoding("llmkit", pat_str=pat_str, mergeable_ranks=ranks, special_tokens={})
        self._core = self._enc._core_bpe  # skip a Python frame per call on the hot path
        self._compiled = compile_patterns(patterns)
        self._bad = regex.compile(self.bad_chars) if self.bad_chars else None
        self._reference = reference  # built lazily: only texts with unencodable bytes need it
        if self._table is None:
            self.encode_ordinary = self._core.encode_ordinary  # no translation: ranks are ids

    def encode_ordinary(self, text: str) -> list[int]:
        table = self._table
        assert table is not None
        return [table[r] for r in self._core.encode_ordinary(text)]

    def encode_chunk(self, text: str) -> list[int]:
        """Like encode_ordinary, but correct for characters whose bytes the vocab lacks."""
        if self._bad is None or self._bad.search(text) is None:
            return self.encode_ordinary(text)
        # Split in Python so each piece is BPE'd alone, exactly as tiktoken would.
        out: list[int] = []
        for piece in split_pieces(self._compiled, text):
            if self._bad.search(piece):
                out.extend(self._reference().bpe(piece))
            else:
                ranks = self._core.encode_single_piece(piece.encode("utf-8"))
                out.extend(ranks if self._table is None else [self._table[r] for r in ranks])
        return out

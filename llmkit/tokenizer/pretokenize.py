"""Pre-tokenization: cut text into pieces before BPE, so merges never cross them.

A pre-tokenizer is a *sequence* of regexes, applied like HF's
``pre_tokenizers.Sequence`` of ``Split(..., behavior="isolated")``: each regex
cuts every piece the previous one produced, and text between matches is kept
as a piece of its own (nothing is ever dropped)::

    >>> split_pieces(compile_patterns(NAMED["smollm"].patterns), "hi  12")
    ['hi', '  ', '1', '2']

The fast engine (tiktoken) takes a single regex and *drops* unmatched text, so
``fast_pattern`` turns a sequence into one equivalent regex where it can, and
returns None where it cannot (the caller then uses the reference engine).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import regex

from llmkit.core.errors import TokenizerError

# GPT-2's regex exactly as HF ByteLevel(use_regex=True) runs it.
GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# HF Digits(individual_digits=True): every digit is its own piece.
DIGIT = r"\p{N}"
DIGITS = r"\p{N}+"  # Digits(individual_digits=False)
LLAMA3 = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
          r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2 = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
         r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
CL100K = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}"""
          r"""| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")

# tiktoken's r50k form of GPT2: same pieces, but possessive quantifiers and a
# single-char last resort (``\s+`` only ever runs on a lone space before \S) let
# the regex engine skip backtracking.
GPT2_FAST = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
# [DIGIT, GPT2] as one regex. Digits become single pieces, and the GPT-2 regex
# then sees a whitespace run *before* a digit as the end of its piece, where
# ``\s+(?!\S)`` keeps the whole run. In the full text the digit is \S, so that
# alternative would leave the last space behind: "  1" -> ["  ", "1"] in the
# sequence but [" ", " ", "1"] naively. ``\s++(?=\p{N})`` restores the former.
SMOLLM_FAST = (r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++|\p{N}| ?[^\s\p{L}\p{N}]++|\s++$"""
               r"""|\s++(?=\p{N})|\s+(?!\S)|\s""")


@dataclass(frozen=True)
class Pre:
    name: str
    patterns: tuple[str, ...]  # HF-semantics sequence: the reference engine runs exactly this
    fast: str  # one tiktoken regex with the same pieces (checked against HF in tests)


NAMED: dict[str, Pre] = {
    "gpt2": Pre("gpt2", (GPT2,), GPT2_FAST),
    "smollm": Pre("smollm", (DIGIT, GPT2), SMOLLM_FAST),
    "llama3": Pre("llama3", (LLAMA3,), LLAMA3),
    "qwen2": Pre("qwen2", (QWEN2,), QWEN2),
    "cl100k": Pre("cl100k", (CL100K,), CL100K),
}
# GGUF ``tokenizer.ggml.pre`` spellings and common names for the same splits
# (llama.cpp gives starcoder/refact/smollm the same digit-then-GPT-2 regexes).
ALIASES = {"llama-bpe": "llama3", "llama-v3": "llama3", "gpt4": "cl100k", "cl100k_base": "cl100k",
           "gpt-2": "gpt2", "r50k": "gpt2", "r50k_base": "gpt2", "starcoder": "smollm", "refact": "smollm",
           "deepseek-r1-qwen": "qwen2"}


def resolve(pre: str | list[str] | tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
    """A name or a regex list -> (canonical name or None, pattern sequence)."""
    if isinstance(pre, str):
        name = ALIASES.get(pre, pre)
        if name not in NAMED:
            known = sorted([*NAMED, *ALIASES])
            raise TokenizerError(f"unknown pre-tokenizer {pre!r}",
                                 f"use one of {known} or pass a list of regexes")
        return name, NAMED[name].patterns
    patterns = tuple(pre)
    if not patterns or not all(isinstance(p, str) for p in patterns):
        raise TokenizerError(f"pre-tokenizer must be a name or a non-empty list of regex strings, got {pre!r}")
    for p in patterns:
        try:
            regex.compile(p)
        except regex.error as e:
            raise TokenizerError(f"pre-tokenizer regex {p!r} does not compile: {e}",
                                 "fix the pattern (it uses the `regex` module's syntax)") from None
    for named in NAMED.values():
        if named.patterns == patterns:
            return named.name, patterns
    return None, patterns


@lru_cache(maxsize=32)
def compile_patterns(patterns: tuple[str, ...]) -> tuple[regex.Pattern, ...]:
    return tuple(regex.compile(p) for p in patterns)


def _isolate(pat: regex.Pattern, piece: str, out: list[str]) -> None:
    """HF Split(behavior="isolated"): matches and the gaps between them, in order."""
    pos = 0
    for m in pat.finditer(piece):
        start, end = m.span()
        if start == end:  # empty matches cut nothing
            continue
        if start > pos:
            out.append(piece[pos:start])
        out.append(piece[start:end])
        pos = end
    if pos < len(piece):
        out.append(piece[pos:])


def split_pieces(compiled: tuple[regex.Pattern, ...], text: str) -> list[str]:
    """The reference pre-tokenizer: every regex cuts every piece of the one before."""
    pieces = [text] if text else []
    for pat in compiled:
        out: list[str] = []
        for piece in pieces:
            _isolate(pat, piece, out)
        pieces = out
    return pieces


def fast_pattern(name: str | None, patterns: tuple[str, ...]) -> str | None:
    """One regex that tiktoken can run with the same pieces, or None.

    A custom single regex gets an extra alternative matching each gap between
    its matches as one piece, because tiktoken silently drops unmatched text
    while HF keeps it. Sequences of custom regexes have no general one-regex
    form, so they get None.
    """
    if name is not None:
        return NAMED[name].fast
    if len(patterns) == 1:
        p = patterns[0]
        return rf"(?:{p})|(?:(?!(?:{p}))[\s\S])+"
    return None


# ---- HF tokenizer.json <-> pattern sequence -----------------------------------------------

_BYTELEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}


def to_hf(name: str | None, patterns: tuple[str, ...]) -> dict:
    """The ``pre_tokenizer`` block of tokenizer.json that splits like ``patterns``."""
    if name == "gpt2":
        return dict(_BYTELEVEL)
    if name == "smollm":
        return {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, dict(_BYTELEVEL)]}
    steps = [{"type": "Split", "pattern": {"Regex": p}, "behavior": "Isolated", "invert": False}
             for p in patterns]
    # use_regex=False: ByteLevel only maps bytes to its alphabet, the Splits cut.
    steps.append({**_BYTELEVEL, "use_regex": False})
    return {"type": "Sequence", "pretokenizers": steps}


def from_hf(block: dict | None) -> tuple[str, ...]:
    """Pattern sequence of a tokenizer.json ``pre_tokenizer``; TokenizerError if unsupported."""
    if block is None:
        raise TokenizerError("tokenizer.json has no pre_tokenizer",
                             "only byte-level BPE (a ByteLevel pre-tokenizer) is supported")
    kind = block.get("type")
    if kind == "Sequence":
        return tuple(p for step in block["pretokenizers"] for p in from_hf(step))
    if kind == "ByteLevel":
        if block.get("add_prefix_space"):
            raise TokenizerError("ByteLevel pre-tokenizer with add_prefix_space=true is not supported",
                                 "re-save the tokenizer with add_prefix_space=false")
        return (GPT2,) if block.get("use_regex", True) else ()
    if kind == "Digits":
        return (DIGIT if block.get("individual_digits") else DIGITS,)
    if kind == "Split":
        pat = block.get("pattern", {})
        if block.get("behavior") != "Isolated" or block.get("invert"):
            raise TokenizerError(f"Split pre-tokenizer with behavior={block.get('behavior')!r}, "
                                 f"invert={block.get('invert')!r} is not supported",
                                 "only behavior='Isolated', invert=false is")
        if "Regex" in pat:
            return (pat["Regex"],)
        return (regex.escape(pat["String"]),)
    raise TokenizerError(f"pre-tokenizer type {kind!r} is not supported",
                         "supported: ByteLevel, Digits, Split (Isolated) and Sequences of them")

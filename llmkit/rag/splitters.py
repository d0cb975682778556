"""Documents -> Chunks: recursive character, token-aware and Markdown-header-aware splitting.

All three share one algorithm: cut on the coarsest separator that works (paragraph, line,
sentence, word, character) until every piece fits, then greedily merge pieces back up to
``chunk_size``, carrying the last ``overlap`` worth of pieces into the next chunk so a fact cut
at a boundary is whole in at least one chunk. "Size" is characters, or tokens of a tokenizer.

A chunk's id is a hash of its source and text: re-ingesting unchanged text gives the same ids.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

from llmkit.core.errors import ConfigError
from llmkit.rag.loaders import Document

SEPARATORS = ("\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", "")
CODE_SEPARATORS = ("\nclass ", "\ndef ", "\n\n", "\n", " ", "")


@dataclass
class Chunk:
    id: str
    text: str
    metadata: dict = field(default_factory=dict)


def chunk_id(source: str, text: str) -> str:
    """Stable content address: same source + same text -> same id, across runs and machines."""
    return hashlib.sha256(f"{source}\x00{text}".encode()).hexdigest()[:32]


def _atoms(text: str, size: int, length: Callable[[str], int], seps: Sequence[str]) -> list[str]:
    """Pieces of ``text`` each of length <= size; separators stay attached (concatenation == text)."""
    if length(text) <= size:
        return [text]
    for k, sep in enumerate(seps):
        if sep == "":  # no separator left: hard cut by characters, shrinking until pieces fit
            step = max(1, size)
            while step > 1 and any(length(text[i:i + step]) > size for i in range(0, len(text), step)):
                step = max(1, step // 2)
            return [text[i:i + step] for i in range(0, len(text), step)]
        if sep in text:
            parts = text.split(sep)
            parts = [p + sep for p in parts[:-1]] + [parts[-1]]
            out: list[str] = []
            for p in parts:
                if p:
                    out.extend([p] if length(p) <= size else _atoms(p, size, length, seps[k + 1:]))
            return out
    return [text]


def _merge(pieces: list[str], lengths: list[int], size: int, overlap: int) -> list[str]:
    """Greedy merge up to size; each new chunk starts with the previous chunk's tail of <= overlap."""
    chunks, cur, cur_len = [], [], 0
    for p, n in zip(pieces, lengths):
        if cur and cur_len + n > size:
            chunks.append("".join(x for x, _ in cur))
            while cur and (cur_len > overlap or cur_len + n > size):
                cur_len -= cur.pop(0)[1]
        cur.append((p, n))
        cur_len += n
    if cur:
        chunks.append("".join(x for x, _ in cur))
    return [c.strip() for c in chunks if c.strip()]


def split_text(text: str, chunk_size: int = 800, overlap: int = 100, length: Callable[[str], int] = len,
               separators: Sequence[str] = SEPARATORS) -> list[str]:
    """Recursive splitting: chunks of length <= chunk_size (as measured by ``length``), with overlap."""
    if chunk_size <= 0 or not 0 <= overlap < chunk_size:
        raise ConfigError(f"chunk_size={chunk_size}, overlap={overlap}", "need chunk_size > 0 and 0 <= overlap < chunk_size")
    pieces = _atoms(text, chunk_size, length, separators)
    return _merge(pieces, [length(p) for p in pieces], chunk_size, overlap)


def token_length(tokenizer) -> Callable[[str], int]:
    """Length in tokens of a ``tokenizers.Tokenizer`` (no special tokens) or an llmkit tokenizer."""
    if type(tokenizer).__module__.startswith("tokenizers"):  # HF tokenizers.Tokenizer (the embedder's WordPiece)
        return lambda s: len(tokenizer.encode(s, add_special_tokens=False).ids)
    return lambda s: len(tokenizer.encode(s))


_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def markdown_sections(text: str) -> list[tuple[list[str], str]]:
    """[(headings path, section text)]: a new section at every heading outside code fences."""
    sections: list[tuple[list[str], list[str]]] = [([], [])]
    path: list[tuple[int, str]] = []
    in_fence = False
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
        m = None if in_fence else _HEADING.match(line.rstrip("\n"))
        if m:
            level = len(m.group(1))
            path = [(lv, h) for lv, h in path if lv < level] + [(level, m.group(2))]
            sections.append(([h for _, h in path], [line]))
        else:
            sections[-1][1].append(line)
    # a heading with no body of its own (e.g. the title right before "## Install") is not a chunk:
    # it still names its children through their headings path
    return [(heads, "".join(lines)) for heads, lines in sections
            if "".join(lines[1:] if heads else lines).strip()]


@dataclass(frozen=True)
class SplitConfig:
    mode: str = "auto"  # auto (markdown for .md, code separators for code, else recursive), recursive, tokens, markdown
    chunk_size: int = 800  # characters, or tokens in mode "tokens"
    overlap: int = 100

    def __post_init__(self):
        if self.mode not in ("auto", "recursive", "tokens", "markdown"):
            raise ConfigError(f"unknown split mode {self.mode!r}", "use auto, recursive, tokens or markdown")


def split_documents(docs: Sequence[Document], cfg: SplitConfig = SplitConfig(), tokenizer=None) -> list[Chunk]:
    """Chunks with the document's metadata plus ``headings`` (Markdown path) and ``chunk`` (index)."""
    if cfg.mode == "tokens" and tokenizer is None:
        raise ConfigError("split mode 'tokens' needs a tokenizer", "pass the embedder's tokenizer")
    length = token_length(tokenizer) if cfg.mode == "tokens" else len
    out: list[Chunk] = []
    seen: set[str] = set()  # the same text twice in one source is one chunk (same id)
    for doc in docs:
        kind = doc.metadata.get("kind")
        md = cfg.mode == "markdown" or (cfg.mode == "auto" and kind in ("markdown", "html"))
        seps = CODE_SEPARATORS if kind == "code" and cfg.mode == "auto" else SEPARATORS
        sections = markdown_sections(doc.text) if md else [([], doc.text)]
        n = 0
        for heads, body in sections:
            for text in split_text(body, cfg.chunk_size, cfg.overlap, length, seps):
                meta = dict(doc.metadata, headings=" > ".join(heads), chunk=n)
                src = f"{doc.metadata.get('source', '')}#{doc.metadata.get('page', '')}{doc.metadata.get('record', '')}"
                cid = chunk_id(src, text)
                if cid not in seen:
                    seen.add(cid)
                    out.append(Chunk(cid, text, meta))
                    n += 1
    return out

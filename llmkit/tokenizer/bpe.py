"""Byte-level BPE tokenizer (GPT-2 family: GPT-2, SmolLM2, Llama-3, Qwen2, cl100k).

    >>> tok = Tokenizer.from_tiktoken_file("gpt2.tiktoken")
    >>> tok.encode("hello world")
    [31373, 995]
    >>> tok.encode("<|endoftext|>")
    Traceback (most recent call last):
    TokenizerError: text contains the special token '<|endoftext|>' — pass allowed_special=...
    >>> tok.encode("<|endoftext|>", allowed_special="all")
    [50256]

Two engines produce the same ids: ``PythonBPE`` (the readable oracle) and
``TiktokenBPE`` (tiktoken's Rust core, the default when it can express the
vocab). Special tokens are matched here, before either engine sees the text.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from llmkit.core.errors import TokenizerError
from llmkit.core.fileio import atomic_write_file
from llmkit.tokenizer import hf_json
from llmkit.tokenizer.bytelevel import bytes_to_token, token_to_bytes
from llmkit.tokenizer.fast import Incompatible, TiktokenBPE, build_ranks
from llmkit.tokenizer.pretokenize import fast_pattern, resolve
from llmkit.tokenizer.reference import Merge, PythonBPE, derive_merges

Backend = Literal["auto", "tiktoken", "python"]
SPECIAL_TYPES = (3, 4)  # GGUF token_type: 3 control, 4 user-defined -> matched whole in text


class Tokenizer:
    """A byte-level BPE vocabulary, its merges, pre-tokenizer and special tokens."""

    def __init__(self, tokens: list[str | None], merges: Iterable[str | tuple[str, str]] | None = None, *,
                 token_types: list[int] | None = None, pre: str | list[str] = "gpt2",
                 special_tokens: dict[str, int] | None = None, bos_id: int | None = None,
                 eos_id: int | None = None, pad_id: int | None = None, unk_id: int | None = None,
                 backend: Backend = "auto", ignore_merges: bool = False,
                 normalizer: Literal["NFC"] | None = None, chat_template: str | None = None):
        # merges=None means "ranks are the ids" (a tiktoken file): merges are then derived on demand.
        self._tokens: list[str | None] = list(tokens)
        self._specials = self._collect_specials(special_tokens, token_types)
        self._token_bytes = [self._spelling_bytes(t, i) for i, t in enumerate(self._tokens)]
        self._ids: dict[str, int] = {}
        for i, t in enumerate(self._tokens):
            if t is not None:
                self._ids.setdefault(t, i)
        self._ids.update(self._specials)
        self._special_ids = set(self._specials.values())
        self._merges = None if merges is None else self._merge_ids(merges)
        self.pre_name, self.patterns = resolve(pre)
        self.ignore_merges = ignore_merges
        if normalizer not in (None, "NFC"):
            raise TokenizerError(f"normalizer {normalizer!r} is not supported", "use None or 'NFC'")
        self.normalizer = normalizer
        self.chat_template = chat_template
        for name, value in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id), ("unk_id", unk_id)):
            if value is not None and not 0 <= value < len(self._tokens):
                raise TokenizerError(f"{name}={value} is outside the vocab (size {len(self._tokens)})",
                                     "pass an existing token id")
        self.bos_id, self.eos_id, self.pad_id, self.unk_id = bos_id, eos_id, pad_id, unk_id
        self._reference: PythonBPE | None = None
        self._missing: frozenset[int] | None = None
        self._engine = self._pick_engine(backend)
        self._encode_ordinary = self._engine.encode_ordinary
        # One regex decides between the hot path and the careful one: any special
        # token string, or any character whose bytes the vocab lacks.
        alternatives = [re.escape(s) for s in sorted(self._specials, key=len, reverse=True)]
        self._special_re = re.compile("|".join(alternatives)) if alternatives else None
        bad = getattr(self._engine, "bad_chars", None)
        attention = alternatives + ([bad] if bad else [])
        self._attention = re.compile("|".join(attention)) if attention else None

    # ---- construction helpers ------------------------------------------------------------

    def _collect_specials(self, special_tokens: dict[str, int] | None,
                          token_types: list[int] | None) -> dict[str, int]:
        specials: dict[str, int] = {}
        if token_types is not None:
            if len(token_types) != len(self._tokens):
                raise TokenizerError(f"token_types has {len(token_types)} entries for {len(self._tokens)} tokens",
                                     "pass one type per token (GGUF tokenizer.ggml.token_type)")
            for i, (t, kind) in enumerate(zip(self._tokens, token_types)):
                if kind in SPECIAL_TYPES and t:
                    specials[t] = i
        for content, i in (special_tokens or {}).items():
            if not isinstance(i, int) or i < 0 or not content:
                raise TokenizerError(f"special token {content!r} has bad id {i!r}", "use a non-negative int id")
            if i >= len(self._tokens):
                self._tokens.extend([None] * (i + 1 - len(self._tokens)))
            if self._tokens[i] not in (None, content):
                raise TokenizerError(f"special token {content!r} id {i} is already {self._tokens[i]!r}",
                                     "give the special token a free id or its own spelling")
            self._tokens[i] = content
            specials[content] = i
        return specials

    def _spelling_bytes(self, token: str | None, i: int) -> bytes | None:
        if token is None:
            return None
        if self._specials.get(token) == i:
            return token.encode("utf-8")  # specials are literal text, not byte-alphabet spellings
        raw = token_to_bytes(token)
        return raw if raw is not None else token.encode("utf-8")  # plain-text added token

    def _merge_ids(self, merges: Iterable[str | tuple[str, str]]) -> list[Merge]:
        out: list[Merge] = []
        for m in merges:
            a, sep, b = m.partition(" ") if isinstance(m, str) else (m[0], " ", m[1])
            ids = (self._ids.get(a), self._ids.get(b), self._ids.get(a + b))
            if not sep or None in ids:
                raise TokenizerError(f"merge {m!r} names a token that is not in the vocab",
                                     "merges must be 'left right' pairs whose parts and join are tokens")
            out.append(ids)  # type: ignore[arg-type]
        return out

    def _pick_engine(self, backend: Backend) -> PythonBPE | TiktokenBPE:
        if backend not in ("auto", "tiktoken", "python"):
            raise TokenizerError(f"unknown backend {backend!r}", "use 'auto', 'tiktoken' or 'python'")
        if backend == "python":
            return self.reference_engine()
        pat = fast_pattern(self.pre_name, self.patterns)
        try:
            if pat is None:
                raise Incompatible(f"the pre-tokenizer sequence {list(self.patterns)} has no single-regex form")
            return TiktokenBPE(self._token_bytes, self._special_ids, self._merges, self.patterns, pat,
                               self.ignore_merges, self.reference_engine)
        except Incompatible as e:
            if backend == "tiktoken":
                raise TokenizerError(f"backend='tiktoken' cannot run this vocab: {e}",
                                     "use backend='auto' or 'python'") from None
            return self.reference_engine()

    def reference_engine(self) -> PythonBPE:
        """The pure-Python oracle for this vocab (built on first use)."""
        if self._reference is None:
            self._reference = PythonBPE(self._token_bytes, self._special_ids, self.merge_ids(),
                                        self.patterns, self.ignore_merges)
        return self._reference

    def merge_ids(self) -> list[Merge]:
        """Merges as (left, right, merged) ids in rank order; derived from ranks if none were given."""
        if self._merges is None:
            ranks = {b: i for i, b in enumerate(self._token_bytes) if b is not None and i not in self._special_ids}
            self._merges, _ = derive_merges(ranks)
        return self._merges

    # ---- constructors --------------------------------------------------------------------

    @classmethod
    def from_vocab(cls, tokens: list[str], merges: list[str | tuple[str, str]], token_types: list[int] | None = None,
                   pre: str | list[str] = "gpt2", special_tokens: dict[str, int] | None = None,
                   bos_id: int | None = None, eos_id: int | None = None, pad_id: int | None = None,
                   unk_id: int | None = None, **kwargs) -> Tokenizer:
        """From GGUF-style fields: byte-alphabet ``tokens`` ('Ġthe'), merges ('Ġ t'), token types."""
        return cls(tokens, merges, token_types=token_types, pre=pre, special_tokens=special_tokens,
                   bos_id=bos_id, eos_id=eos_id, pad_id=pad_id, unk_id=unk_id, **kwargs)

    @classmethod
    def from_tiktoken_file(cls, path: str | Path, special_tokens: dict[str, int] | None = None,
                           pre: str | list[str] = "gpt2", **kwargs) -> Tokenizer:
        """From a tiktoken rank file (``base64-token rank`` per line), e.g. ``gpt2.tiktoken``."""
        if special_tokens is None:
            special_tokens = {"<|endoftext|>": 50256}
        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"tiktoken file {str(path)!r} does not exist", "pass the path of a .tiktoken file")
        tokens: list[str | None] = []
        for lineno, line in enumerate(path.read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            try:
                b64, rank_s = line.split()
                data, rank = base64.b64decode(b64, validate=True), int(rank_s)
            except ValueError:
                raise TokenizerError(f"{path}:{lineno}: {line[:60]!r} is not 'base64-token rank'",
                                     "pass an unmodified .tiktoken file") from None
            if rank >= len(tokens):
                tokens.extend([None] * (rank + 1 - len(tokens)))
            tokens[rank] = bytes_to_token(data)
        eot = special_tokens.get("<|endoftext|>")
        kwargs.setdefault("eos_id", eot)
        kwargs.setdefault("bos_id", eot)
        # tiktoken returns a token outright when a whole piece equals it: HF calls that ignore_merges.
        kwargs.setdefault("ignore_merges", True)
        return cls(tokens, None, pre=pre, special_tokens=special_tokens, **kwargs)

    @classmethod
    def from_tokenizer_json(cls, path_or_dict: str | Path | dict, **kwargs) -> Tokenizer:
        """From an HF ``tokenizer.json`` (BPE model, ByteLevel decoder)."""
        return cls(**{**hf_json.parse_tokenizer_json(path_or_dict), **kwargs})

    @classmethod
    def load(cls, directory: str | Path, **kwargs) -> Tokenizer:
        """Read ``tokenizer.json`` (+ ``tokenizer_config.json`` if present) from a directory."""
        return cls(**{**hf_json.load_dir(directory), **kwargs})

    def save(self, directory: str | Path) -> None:
        """Write HF-loadable ``tokenizer.json`` and ``tokenizer_config.json`` into ``directory``."""
        hf_json.save_dir(self, directory)

    def save_tiktoken(self, path: str | Path) -> None:
        """Write a tiktoken rank file: ``base64(token bytes) rank`` per line, rank = token id.

        Special tokens are not part of the format; load it with the same split and specials::

            enc = tiktoken.Encoding("mine", pat_str=tok.tiktoken_pattern, special_tokens=tok.special_tokens,
                                    mergeable_ranks=tiktoken.load.load_tiktoken_bpe(path))
        """
        try:
            ranks, table = build_ranks(self._token_bytes, self._special_ids, self._merges, self.ignore_merges)
        except Incompatible as e:
            raise TokenizerError(f"this vocab cannot be a tiktoken rank file: {e}",
                                 "save() it as tokenizer.json") from None
        if table is not None:
            raise TokenizerError("this vocab's ids are not in merge order, so they cannot be tiktoken ranks",
                                 "save() it as tokenizer.json instead")
        lines = [f"{base64.b64encode(b).decode('ascii')} {r}\n" for b, r in sorted(ranks.items(), key=lambda kv: kv[1])]
        atomic_write_file(path, "".join(lines))

    @property
    def tiktoken_pattern(self) -> str:
        """The single regex tiktoken needs to split text like this tokenizer does."""
        pat = fast_pattern(self.pre_name, self.patterns)
        if pat is None:
            raise TokenizerError(f"the pre-tokenizer sequence {list(self.patterns)} has no single-regex form",
                                 "use a named pre-tokenizer or a single regex")
        return pat

    # ---- encoding ------------------------------------------------------------------------

    def normalize(self, text: str) -> str:
        return unicodedata.normalize("NFC", text) if self.normalizer == "NFC" else text

    def encode(self, text: str, allowed_special: Literal["all", "none"] | Collection[str] = "none",
               disallowed_special: Literal["all"] | Collection[str] = "all") -> list[int]:
        """Token ids of ``text``. Special token strings raise unless allowed (or not disallowed)."""
        if not isinstance(text, str):
            raise TokenizerError(f"encode() takes a str, got {type(text).__name__}", "decode bytes to str first")
        if self.normalizer is not None:
            text = self.normalize(text)
        if allowed_special != "none" and allowed_special != "all":
            self._check_known(allowed_special)
        if disallowed_special != "all" and isinstance(disallowed_special, str):
            raise TokenizerError(f"disallowed_special={disallowed_special!r} is not 'all' or a collection",
                                 "pass 'all' or e.g. () to encode special strings as plain text")
        try:
            if self._attention is None or self._attention.search(text) is None:
                return self._encode_ordinary(text)  # hot path: no specials, every byte has a token
            return self._encode_careful(text, allowed_special, disallowed_special)
        except UnicodeEncodeError:  # lone surrogates: replace them like tiktoken does
            return self.encode(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"),
                               allowed_special, disallowed_special)

    def _check_known(self, names: Collection[str]) -> None:
        if isinstance(names, str):  # set("<|x|>") would silently be a set of characters
            raise TokenizerError(f"allowed_special={names!r} is not 'all', 'none' or a set",
                                 f"pass {{{names!r}}} to allow one special token")
        unknown = sorted(set(names) - set(self._specials))
        if unknown:
            raise TokenizerError(f"allowed_special names unknown special tokens {unknown}",
                                 f"use 'all', 'none' or a subset of {sorted(self._specials)}")

    def _encode_careful(self, text: str, allowed_special, disallowed_special) -> list[int]:
        if allowed_special == "all":
            allowed = set(self._specials)
        elif allowed_special == "none":
            allowed = set()
        else:
            allowed = set(allowed_special)
        disallowed = set(self._specials) - allowed if disallowed_special == "all" else set(disallowed_special)
        chunk = self._engine.encode_chunk
        out: list[int] = []
        pos = 0
        for m in self._special_re.finditer(text) if self._special_re else ():
            token = m.group()
            if token in allowed:
                out += chunk(text[pos:m.start()])
                out.append(self._specials[token])
                pos = m.end()
            elif token in disallowed:
                raise TokenizerError(
                    f"text contains the special token {token!r}",
                    f"pass allowed_special={{{token!r}}} (or 'all') to encode it as one token, "
                    "or disallowed_special=() to encode it as plain text")
        out += chunk(text[pos:])
        return out

    def encode_batch(self, texts: list[str], allowed_special: Literal["all", "none"] | Collection[str] = "none",
                     disallowed_special: Literal["all"] | Collection[str] = "all",
                     num_threads: int = 1) -> list[list[int]]:
        """encode() over a list; ``num_threads>1`` uses threads (tiktoken releases the GIL)."""
        def one(t: str) -> list[int]:
            return self.encode(t, allowed_special, disallowed_special)
        if num_threads <= 1 or len(texts) < 2:
            return [one(t) for t in texts]
        with ThreadPoolExecutor(num_threads) as pool:
            return list(pool.map(one, texts))

    # ---- decoding and vocab ----------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        table = self._token_bytes
        ids = list(ids)
        try:
            if ids and min(ids) < 0:
                raise IndexError
            return b"".join([table[i] for i in ids])
        except (IndexError, TypeError):
            bad = next(i for i in ids if not 0 <= i < len(table) or table[i] is None)
            raise TokenizerError(f"token id {bad} is not in the vocab (size {len(table)})",
                                 "decode ids produced by this tokenizer") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; bytes that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        """Raw bytes of one token (a streaming detokenizer joins these until they are valid UTF-8)."""
        return self.decode_bytes([token_id])

    def id_to_token(self, token_id: int) -> str:
        """The vocab spelling ('Ġthe'), or the literal text of a special token."""
        self.decode_bytes([token_id])  # validates the id
        token = self._tokens[token_id]
        assert token is not None
        return token

    def token_to_id(self, token: str) -> int:
        if token not in self._ids:
            raise TokenizerError(f"token {token!r} is not in the vocab",
                                 "use the vocab spelling (e.g. 'Ġthe' for ' the') or a special token")
        return self._ids[token]

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._specials)

    def is_special(self, token_id: int) -> bool:
        return token_id in self._special_ids

    @property
    def backend(self) -> str:
        """Name of the engine in use: 'tiktoken' or 'python'."""
        return self._engine.name

    @property
    def pre(self) -> str | list[str]:
        return self.pre_name if self.pre_name else list(self.patterns)

    @property
    def tokens(self) -> list[str | None]:
        """Vocab spellings by id (None for unused ids)."""
        return list(self._tokens)

    @property
    def missing_bytes(self) -> frozenset[int]:
        """Byte values with no token of their own; HF BPE drops them from the input."""
        if self._missing is None:
            have = {b[0] for i, b in enumerate(self._token_bytes)
                    if b is not None and len(b) == 1 and i not in self._special_ids}
            self._missing = frozenset(range(256)) - have
        return self._missing

    def __repr__(self) -> str:
        return (f"Tokenizer(vocab_size={self.vocab_size}, pre={self.pre_name or 'custom'!r}, "
                f"specials={len(self._specials)}, backend={self.backend!r})")

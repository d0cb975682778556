"""Small, asset-free checks of the BPE engines, special tokens, errors and helpers."""

from __future__ import annotations

import random

import pytest
import regex

from llmkit.core.errors import TokenizerError
from llmkit.tokenizer import Tokenizer
from llmkit.tokenizer.bytelevel import bytes_to_token, token_to_bytes
from llmkit.tokenizer.fast import Incompatible, missing_byte_chars
from llmkit.tokenizer.pretokenize import (
    GPT2, GPT2_FAST, NAMED, SMOLLM_FAST, compile_patterns, split_pieces,
)
from llmkit.tokenizer.reference import PythonBPE, derive_merges
from tests.tokenizer.corpus import CORPUS

BYTES = [bytes_to_token(bytes([b])) for b in range(256)]
END = "<|end|>"


def tiny(merges: list[str], backend: str = "auto", **kw) -> Tokenizer:
    """The 256 byte tokens plus one token per merge (ids in merge order) and one special."""
    tokens = BYTES + ["".join(m.split(" ")) for m in merges]
    return Tokenizer.from_vocab(tokens, merges, pre=kw.pop("pre", "gpt2"),
                                special_tokens={END: len(tokens)}, backend=backend, **kw)


def ids_of(tok: Tokenizer, *spellings: str) -> list[int]:
    return [tok.token_to_id(s) for s in spellings]


@pytest.mark.parametrize("backend", ["python", "tiktoken"])
def test_worked_example(backend):
    tok = tiny(["h e", "l l", "he ll", "hell o"], backend)
    assert tok.backend == backend
    assert tok.encode("hello") == ids_of(tok, "hello")
    assert tok.encode("hel") == ids_of(tok, "he", "l")
    assert tok.encode("hello hello") == ids_of(tok, "hello", "Ġ", "hello")  # no (Ġ,h) merge


@pytest.mark.parametrize("backend", ["python", "tiktoken"])
def test_lowest_rank_pair_wins_not_leftmost(backend):
    # "ell": (e,l) is leftmost, but (l,l) has the lower rank, so it merges first.
    tok = tiny(["l l", "e l"], backend)
    assert tok.encode("ell") == ids_of(tok, "e", "ll")


def test_sweep_merging_equals_one_pair_at_a_time():
    merges = ["a a", "aa a", "a b", "ab a", "aa aa", "b b", "aaa b", "ab ab"]
    tok = tiny(merges, "python", pre=[r"[ab]+|[^ab]+"])
    sweep = tok.reference_engine()
    exact = PythonBPE(tok._token_bytes, set(tok.special_tokens.values()), tok.merge_ids(), tok.patterns)
    exact._sweep = False  # the literal HF loop: merge one lowest-ranked leftmost pair, rescan
    rng = random.Random(0)
    for _ in range(300):
        piece = "".join(rng.choice("ab") for _ in range(rng.randint(1, 14)))
        assert sweep.bpe(piece) == exact.bpe(piece), piece


def test_specials_raise_unless_allowed():
    tok = tiny(["h e"])
    end = tok.special_tokens[END]
    with pytest.raises(TokenizerError, match=r"<\|end\|>.*allowed_special"):
        tok.encode("he" + END)
    assert tok.encode("he" + END, allowed_special="all") == ids_of(tok, "he") + [end]
    assert tok.encode(END + END, allowed_special={END}) == [end, end]
    as_text = tok.encode(END, disallowed_special=())
    assert end not in as_text and tok.decode(as_text) == END
    with pytest.raises(TokenizerError, match="nope"):
        tok.encode("x", allowed_special={"<|nope|>"})


def test_decode_errors_and_bytes():
    tok = tiny(["h e"])
    assert tok.decode(tok.encode("héllo ✓")) == "héllo ✓"
    for bad in (tok.vocab_size, 10**6, -1):
        with pytest.raises(TokenizerError, match=str(bad)):
            tok.decode([0, bad])
    assert tok.decode([0xE2]) == "\ufffd"  # a lone lead byte is not UTF-8
    assert tok.token_bytes(tok.token_to_id("Ġ")) == b" "
    with pytest.raises(TokenizerError, match="'zzz'"):
        tok.token_to_id("zzz")
    with pytest.raises(TokenizerError, match="str"):
        tok.encode(b"bytes")  # type: ignore[arg-type]


def test_vocab_with_holes_rejects_hole_ids():
    tok = Tokenizer.from_vocab(BYTES, [], special_tokens={END: 300})
    assert tok.vocab_size == 301 and tok.is_special(300)
    with pytest.raises(TokenizerError, match="280"):
        tok.decode([280])


def test_encode_batch_and_surrogates_and_nfc():
    tok = tiny(["h e", "Ã ©"])
    texts = ["hello", "", "é", END]
    assert tok.encode_batch(texts, allowed_special="all", num_threads=2) == \
        [tok.encode(t, allowed_special="all") for t in texts]
    assert tok.encode("a\ud800b") == tok.encode("a\ufffdb")
    nfc = tiny(["h e"], normalizer="NFC")
    assert nfc.encode("e\u0301") == nfc.encode("\u00e9") != tok.encode("e\u0301")


def test_derive_merges_known_values():
    ranks = {b"a": 0, b"b": 1, b"c": 2, b"ab": 3, b"abc": 4, b"bc": 5}
    merges, unreachable = derive_merges(ranks)
    assert merges == [(0, 1, 3), (3, 2, 4), (1, 2, 5)] and unreachable == []


def test_missing_byte_chars_known_values():
    pat = regex.compile(missing_byte_chars([0x04, 0xF1, 0xC0]))
    assert pat.fullmatch("\x04") and pat.fullmatch("\U00040000") and pat.fullmatch("\U0007ffff")
    assert not pat.search("\x05\U0003ffff\U00080000é")
    with pytest.raises(Incompatible, match="0x85"):
        missing_byte_chars([0x85])
    rng = random.Random(1)
    missing = [0x06, 0xC3, 0xE4, 0xF2]
    pat = regex.compile(missing_byte_chars(missing))
    for _ in range(3000):
        ch = chr(rng.choice([rng.randrange(0x80), rng.randrange(0x800), rng.randrange(0x10000),
                             rng.randrange(0xE000, 0x110000)]))
        if 0xD800 <= ord(ch) < 0xE000:
            continue
        assert bool(pat.fullmatch(ch)) == any(b in missing for b in ch.encode()), hex(ord(ch))


def test_fast_patterns_cut_like_the_sequences():
    rng = random.Random(2)
    alphabet = [" ", "  ", "\n", "\t", "1", "23", "a", "Bc", "'s", "'", ".", "!!", "é", "٣", "\u00a0", "x9"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(2000)]
    for fast, name in ((SMOLLM_FAST, "smollm"), (GPT2_FAST, "gpt2")):
        compiled, seq = regex.compile(fast), compile_patterns(NAMED[name].patterns)
        for text in texts + CORPUS:
            assert compiled.findall(text) == split_pieces(seq, text), (name, text)
    assert split_pieces(compile_patterns(NAMED["smollm"].patterns), "  1") == ["  ", "1"]
    assert regex.findall(GPT2, "  1") == [" ", " 1"]  # the naive one-regex version differs


def test_custom_regex_keeps_gaps_on_both_engines():
    # HF keeps text between matches as pieces; tiktoken would drop it unless told.
    merges = ["h e", "l l", "he ll", "1 2", "Ġ Ġ"]
    fast, ref = tiny(merges, pre=[r"\p{L}+"]), tiny(merges, "python", pre=[r"\p{L}+"])
    assert fast.backend == "tiktoken"
    for text in CORPUS:
        assert fast.encode(text) == ref.encode(text), repr(text)
        assert fast.decode(fast.encode(text)) == text


def test_inexpressible_vocab_falls_back_or_raises():
    # "abc" made by two different merges: tiktoken ranks tokens, so it cannot tell them apart.
    tokens = BYTES + ["ab", "bc", "abc"]
    merges = ["a b", "b c", "ab c", "a bc"]
    assert Tokenizer.from_vocab(tokens, merges).backend == "python"
    with pytest.raises(TokenizerError, match="more than one merge"):
        Tokenizer.from_vocab(tokens, merges, backend="tiktoken")


def test_bad_inputs_raise_typed_errors(tmp_path):
    with pytest.raises(TokenizerError, match="'nope'.*gpt2"):
        Tokenizer.from_vocab(BYTES, [], pre="nope")
    with pytest.raises(TokenizerError, match="backend"):
        Tokenizer.from_vocab(BYTES, [], backend="rust")
    with pytest.raises(TokenizerError, match="'q z'"):
        Tokenizer.from_vocab(BYTES, ["q z"])
    with pytest.raises(TokenizerError, match="does not exist"):
        Tokenizer.from_tiktoken_file(tmp_path / "missing.tiktoken")
    (tmp_path / "bad.tiktoken").write_text("YQ== 0\nnot-a-line\n")
    with pytest.raises(TokenizerError, match=":2:"):
        Tokenizer.from_tiktoken_file(tmp_path / "bad.tiktoken")
    with pytest.raises(TokenizerError, match="does not exist"):
        Tokenizer.load(tmp_path / "nowhere")


@pytest.mark.parametrize("patch, named", [
    ({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}, "Unigram"),
    ({"model": {"type": "WordPiece", "vocab": {"a": 0}}}, "WordPiece"),
    ({"decoder": {"type": "Metaspace"}}, "Metaspace"),
    ({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "byte_fallback": True}}, "byte_fallback"),
    ({"pre_tokenizer": {"type": "Whitespace"}}, "Whitespace"),
    ({"normalizer": {"type": "Lowercase"}}, "Lowercase"),
])
def test_unsupported_tokenizer_json_names_the_part(patch, named):
    base = {"model": {"type": "BPE", "vocab": {t: i for i, t in enumerate(BYTES)}, "merges": []},
            "decoder": {"type": "ByteLevel"}, "pre_tokenizer": {"type": "ByteLevel", "use_regex": True},
            "normalizer": None, "added_tokens": []}
    assert Tokenizer.from_tokenizer_json(base).encode("hi") == [ord("h"), ord("i")]
    with pytest.raises(TokenizerError, match=named):
        Tokenizer.from_tokenizer_json({**base, **patch})


def test_byte_alphabet_round_trip():
    every = bytes(range(256))
    assert token_to_bytes(bytes_to_token(every)) == every
    assert bytes_to_token(b" the") == "Ġthe" and bytes_to_token(b"\n") == "Ċ"
    assert token_to_bytes("<think>") == b"<think>" and token_to_bytes("日本") is None


def test_allowed_special_must_be_a_collection():
    tok = tiny([])
    with pytest.raises(TokenizerError, match="set"):
        tok.encode(END, allowed_special=END)  # a bare string is not a set of names
    with pytest.raises(TokenizerError, match="disallowed_special"):
        tok.encode("x", disallowed_special="none")

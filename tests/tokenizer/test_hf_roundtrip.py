"""save() writes a tokenizer.json that HF loads and encodes identically; load() round trips."""

from __future__ import annotations

import json

import pytest

from llmkit.tokenizer import Tokenizer
from tests.tokenizer.corpus import CORPUS, SMOL_SPECIAL

import tokenizers as tokenizers  # a test extra: missing must fail, not skip


def _assert_hf_equal(tok: Tokenizer, directory, texts) -> None:
    hf = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
    for text in texts:
        assert hf.encode(text, add_special_tokens=False).ids == tok.encode(text, allowed_special="all"), repr(text)


def test_smollm_save_loads_in_hf_and_back(smol, tmp_path):
    smol.save(tmp_path)
    data = json.loads((tmp_path / "tokenizer.json").read_text())
    assert data["pre_tokenizer"]["pretokenizers"][0] == {"type": "Digits", "individual_digits": True}
    assert {a["content"] for a in data["added_tokens"] if a["special"]} == set(smol.special_tokens)
    _assert_hf_equal(smol, tmp_path, CORPUS + SMOL_SPECIAL)

    back = Tokenizer.load(tmp_path)
    assert back.pre == "smollm" and back.backend == "tiktoken"
    assert (back.bos_id, back.eos_id, back.pad_id) == (smol.bos_id, smol.eos_id, smol.pad_id)
    assert back.chat_template == smol.chat_template
    assert back.tokens == smol.tokens and back.special_tokens == smol.special_tokens
    assert back.merge_ids() == smol.merge_ids()
    for text in CORPUS + SMOL_SPECIAL:
        assert back.encode(text, allowed_special="all") == smol.encode(text, allowed_special="all")
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|im_end|>" and config["bos_token"] == "<|im_start|>"


def test_transformers_autotokenizer_reads_the_saved_dir(smol, tmp_path):
    import transformers as transformers  # a test extra: missing must fail, not skip
    smol.save(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    text = SMOL_SPECIAL[0] + " 12  3"
    assert hf.encode(text, add_special_tokens=False) == smol.encode(text, allowed_special="all")
    assert hf.eos_token == "<|im_end|>" and hf.chat_template == smol.chat_template


@pytest.mark.parametrize("pre", ["gpt2", "llama3", "qwen2", "cl100k"])
def test_gpt2_ranks_save_with_each_pre_tokenizer(gpt2_path, tmp_path, pre):
    # One vocab, every named split: HF's Split/ByteLevel must cut like our regexes.
    tok = Tokenizer.from_tiktoken_file(gpt2_path, pre=pre)
    tok.save(tmp_path)
    _assert_hf_equal(tok, tmp_path, CORPUS + ["a<|endoftext|>b"])
    back = Tokenizer.load(tmp_path)
    assert back.pre == pre and back.ignore_merges and back.eos_id == 50256
    assert back.encode(CORPUS[3]) == tok.encode(CORPUS[3])


def test_custom_regex_list_round_trips(smol_fields, tmp_path):
    pre = [r"\p{N}{1,2}", r"""'s| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""]
    tok = Tokenizer.from_vocab(smol_fields["tokens"], smol_fields["merges"], smol_fields["token_type"], pre)
    assert tok.backend == "python"  # a custom sequence has no single-regex form
    tok.save(tmp_path)
    _assert_hf_equal(tok, tmp_path, CORPUS)
    assert Tokenizer.load(tmp_path).pre == pre

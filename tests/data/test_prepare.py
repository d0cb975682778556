"""prepare(): token counts, dtype rule, BOS/EOS boundaries, the val split, atomicity."""

from __future__ import annotations

import json

import numpy as np
import pytest

import llmkit.data.prepare as P
from llmkit.data.errors import DataError
from llmkit.data.prepare import boundary_ids, is_val, prepare
from llmkit.data.shards import read_index, token_dtype, tokenizer_fingerprint
from llmkit.data.sources import Directory, JsonlFile
from llmkit.tokenizer import Tokenizer

from .conftest import make_docs, write_jsonl


def read_split(out, index, split) -> np.ndarray:
    dtype = np.dtype(index["dtype"]).newbyteorder("<")
    parts = [np.fromfile(out / s["file"], dtype=dtype) for s in index["splits"][split]["shards"]]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def expected_streams(tok, docs, val_fraction, bos, eos):
    streams = {"train": [], "val": []}
    for d in docs:
        s = streams["val" if is_val(d.encode(), val_fraction) else "train"]
        s += ([bos] if bos is not None else []) + tok.encode(d, disallowed_special=()) + ([eos] if eos is not None else [])
    return streams


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    docs = make_docs(300)
    return docs, write_jsonl(tmp_path_factory.mktemp("corpus") / "docs.jsonl", docs)


def test_index_matches_reencoding_across_shards(corpus, gpt2, tmp_path):
    docs, path = corpus
    out = tmp_path / "data"
    index = prepare(JsonlFile(path), gpt2, out, val_fraction=0.1, shard_tokens=700, progress=False,
                    batch_bytes=2000)
    assert index == read_index(out)  # what is returned is what is on disk, and every shard has its size
    assert index["dtype"] == "uint16" and index["vocab_size"] == 50257
    want = expected_streams(gpt2, docs, 0.1, 50256, None)
    for split in ("train", "val"):
        got = read_split(out, index, split)
        assert got.tolist() == want[split]
        info = index["splits"][split]
        assert info["tokens"] == len(want[split]) == sum(s["tokens"] for s in info["shards"])
        assert all(s["tokens"] <= 700 for s in info["shards"])
    assert len(index["splits"]["train"]["shards"]) > 3  # the stream really was cut into shards
    n_val = sum(is_val(d.encode(), 0.1) for d in docs)
    assert 5 < n_val < 60
    assert index["splits"]["val"]["docs"] == n_val and index["totals"]["docs"] == len(docs)
    assert index["totals"]["bytes"] == sum(len(d.encode()) for d in docs)
    # the copy of the tokenizer makes the directory self-describing
    saved = Tokenizer.load(out / "tokenizer")
    assert tokenizer_fingerprint(saved) == tokenizer_fingerprint(gpt2) == index["tokenizer"]["sha256"]


def test_gpt2_boundary_is_one_endoftext_and_corpus_text_cannot_forge_it(corpus, gpt2, tmp_path):
    docs, path = corpus
    assert sum("<|endoftext|>" in d for d in docs) > 10
    index = prepare(JsonlFile(path), gpt2, tmp_path / "d", val_fraction=0.0, progress=False)
    stream = read_split(tmp_path / "d", index, "train")
    assert index["boundary"] == {"bos_id": 50256, "eos_id": None}
    assert int((stream == 50256).sum()) == len(docs)  # only the boundaries, never the literal strings
    assert stream[0] == 50256
    assert index["splits"]["val"] == {"docs": 0, "bytes": 0, "tokens": 0, "shards": []}


def test_distinct_bos_and_eos_wrap_every_document(gpt2_path, tmp_path):
    tok = Tokenizer.from_tiktoken_file(gpt2_path, special_tokens={"<|endoftext|>": 50256, "<|bos|>": 50257},
                                       bos_id=50257)
    assert boundary_ids(tok) == (50257, 50256)
    docs = ["alpha beta", "gamma", "delta epsilon zeta"]
    src = write_jsonl(tmp_path / "d.jsonl", docs)
    index = prepare(JsonlFile(src), tok, tmp_path / "d", val_fraction=0.0, progress=False)
    stream = read_split(tmp_path / "d", index, "train").tolist()
    want = []
    for d in docs:
        want += [50257, *tok.encode(d), 50256]
    assert stream == want
    index = prepare(JsonlFile(src), tok, tmp_path / "e", val_fraction=0.0, add_bos=False, progress=False)
    assert read_split(tmp_path / "e", index, "train").tolist().count(50257) == 0


def test_dtype_rule_uint32_above_65536(gpt2_path, tmp_path):
    assert token_dtype(65536) == np.dtype("<u2") and token_dtype(65537) == np.dtype("<u4")
    big = Tokenizer.from_tiktoken_file(gpt2_path, special_tokens={"<|endoftext|>": 50256, "<|far|>": 70000},
                                       bos_id=70000)
    assert big.vocab_size == 70001
    src = write_jsonl(tmp_path / "d.jsonl", ["hello world", "second doc"])
    index = prepare(JsonlFile(src), big, tmp_path / "d", val_fraction=0.0, progress=False)
    assert index["dtype"] == "uint32"
    shard = tmp_path / "d" / index["splits"]["train"]["shards"][0]["file"]
    assert shard.stat().st_size == 4 * index["splits"]["train"]["tokens"]
    assert read_split(tmp_path / "d", index, "train")[0] == 70000  # would wrap around in uint16


def test_val_split_is_a_function_of_content_not_order(corpus, gpt2, tmp_path):
    docs, _ = corpus
    a = write_jsonl(tmp_path / "a.jsonl", docs)
    b = write_jsonl(tmp_path / "b.jsonl", docs[::-1])
    ia = prepare(JsonlFile(a), gpt2, tmp_path / "A", val_fraction=0.1, progress=False)
    ib = prepare(JsonlFile(b), gpt2, tmp_path / "B", val_fraction=0.1, progress=False)
    assert ia["splits"]["val"]["docs"] == ib["splits"]["val"]["docs"]
    assert ia["splits"]["val"]["bytes"] == ib["splits"]["val"]["bytes"]
    # and rerunning gives byte-identical files
    ia2 = prepare(JsonlFile(a), gpt2, tmp_path / "A2", val_fraction=0.1, progress=False)
    assert ia2 == ia
    for s in ia["splits"]["train"]["shards"] + ia["splits"]["val"]["shards"]:
        assert (tmp_path / "A" / s["file"]).read_bytes() == (tmp_path / "A2" / s["file"]).read_bytes()


def test_small_corpus_still_gets_a_val_document(gpt2, tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", ["one doc", "two doc", "three doc"])
    index = prepare(JsonlFile(src), gpt2, tmp_path / "d", val_fraction=0.005, progress=False)
    assert index["split"]["forced_last_doc_to_val"] is True
    assert index["splits"]["val"]["docs"] == 1 and index["splits"]["train"]["docs"] == 2
    assert read_split(tmp_path / "d", index, "val").tolist() == [50256, *gpt2.encode("three doc")]


def test_interrupted_prepare_leaves_no_complete_looking_dir(corpus, gpt2, tmp_path, monkeypatch):
    docs, path = corpus
    out = tmp_path / "data"
    calls = {"n": 0}
    real = gpt2.encode_batch

    def flaky(texts, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the corpus
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(gpt2, "encode_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare(JsonlFile(path), gpt2, out, progress=False, batch_bytes=1000)
    assert calls["n"] == 3
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temp dir left behind either

    # A previous good data dir survives a failed re-prepare untouched.
    monkeypatch.setattr(gpt2, "encode_batch", real)
    good = prepare(JsonlFile(path), gpt2, out, progress=False)
    before = (out / "index.json").read_bytes()
    calls["n"] = 0
    monkeypatch.setattr(gpt2, "encode_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare(JsonlFile(path), gpt2, out, progress=False, batch_bytes=1000, val_fraction=0.2)
    assert (out / "index.json").read_bytes() == before and read_index(out) == good


def test_refuses_to_replace_a_directory_it_did_not_write(gpt2, tmp_path):
    out = tmp_path / "home"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    src = write_jsonl(tmp_path / "d.jsonl", ["a doc"])
    with pytest.raises(DataError, match="is not a prepared data directory"):
        prepare(JsonlFile(src), gpt2, out, progress=False)
    assert (out / "precious.txt").read_text() == "keep me"


def test_empty_corpus_and_bad_arguments(gpt2, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="corpus is empty"):
        prepare(Directory(tmp_path / "empty"), gpt2, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError, match="val_fraction=1.5"):
        prepare(Directory(tmp_path), gpt2, tmp_path / "out", val_fraction=1.5)


def test_output_inside_an_input_directory_is_not_read_back(gpt2, tmp_path):
    (tmp_path / "notes.txt").write_text("some notes\n")
    first = prepare(Directory(tmp_path), gpt2, tmp_path / "data", val_fraction=0.0, progress=False)
    second = prepare(Directory(tmp_path), gpt2, tmp_path / "data", val_fraction=0.0, progress=False)
    assert second["totals"] == first["totals"] == {"docs": 1, "bytes": 11, "tokens": first["totals"]["tokens"]}


def test_prepare_data_function_with_stdlib_default(gpt2, tmp_path):
    res = P.prepare_data(out=tmp_path / "std", tokenizer=gpt2, max_bytes=200_000, progress=False)
    assert res["totals"]["bytes"] == 200_000 and res["sources"][0]["kind"] == "stdlib"
    on_disk = json.loads((tmp_path / "std" / "index.json").read_text())
    assert "seconds" not in on_disk and on_disk["totals"] == res["totals"]

"""`llmkit tokenizer train|encode|decode` through its parser, and the corpus readers behind it."""

from __future__ import annotations

import argparse
import gzip
import json

import pytest

from llmkit.cli import main as cli_main
from llmkit.cli import tokenizer as cli
from llmkit.core.errors import TokenizerError
from llmkit.tokenizer import Tokenizer
from llmkit.tokenizer.texts import iter_texts, split_lines, take_bytes

TEXT = "def add(a, b):\n    return a + b\n\n# héllo wörld 日本語 😀\n" * 40


def run(*argv: str) -> None:
    parser = argparse.ArgumentParser(prog="llmkit")
    cli.register(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(list(argv))
    args.func(args)


@pytest.fixture()
def corpus(tmp_path):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text(TEXT, encoding="utf-8")
    (root / "sub" / "b.md").write_text("# Notes\n\nSome *markdown* text. " * 30, encoding="utf-8")
    (root / "skip.bin").write_bytes(b"\xff\xfe not text")  # not a text glob: never read
    with gzip.open(tmp_path / "docs.jsonl.gz", "wt", encoding="utf-8") as f:
        for i in range(60):
            f.write(json.dumps({"body": f"document {i}: the quick brown fox"}) + "\n")
    return tmp_path


def test_train_writes_a_loadable_tokenizer(corpus, capsys):
    out = corpus / "tok"
    run("tokenizer", "train", "--data", str(corpus / "data"), "--data", str(corpus / "docs.jsonl.gz"),
        "--field", "body", "--vocab-size", "350", "--special", "<|endoftext|>", "--special", "<|pad|>",
        "--out", str(out), "--quiet")
    printed = capsys.readouterr().out
    assert "vocab size      350 (92 merges + 256 bytes + 2 special)" in printed
    assert "bytes/token" in printed and "held-out" in printed
    tok = Tokenizer.load(out)
    assert tok.vocab_size == 350 and tok.special_tokens == {"<|endoftext|>": 348, "<|pad|>": 349}
    assert tok.decode(tok.encode(TEXT)) == TEXT and tok.backend == "tiktoken"
    assert Tokenizer.from_tiktoken_file(out / "tokenizer.tiktoken", pre="gpt4").encode(TEXT) == tok.encode(TEXT)

    run("tokenizer", "encode", "--tokenizer", str(out), "return a + b", "--json")
    data = json.loads(capsys.readouterr().out)
    assert data["ids"] == tok.encode("return a + b") and "".join(data["tokens"]) == "return a + b"
    run("tokenizer", "decode", "-t", str(out), ",".join(map(str, data["ids"])))
    assert capsys.readouterr().out == "return a + b\n"
    run("tokenizer", "encode", "-t", str(out), "a<|pad|>")  # special strings are plain text by default
    assert 349 not in map(int, capsys.readouterr().out.split())
    run("tokenizer", "encode", "-t", str(out), "a<|pad|>", "--allow-special")
    assert capsys.readouterr().out.split()[-1] == "349"


def test_train_on_the_embedded_stdlib_corpus(tmp_path, capsys):
    run("tokenizer", "train", "--vocab-size", "300", "--max-bytes", "300000", "--out", str(tmp_path), "--quiet")
    assert "MB of the Python standard library" in capsys.readouterr().out
    assert Tokenizer.load(tmp_path).vocab_size == 300


def test_bad_input_is_a_one_line_error(corpus, tmp_path, monkeypatch, capsys):
    (corpus / "data" / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(TokenizerError, match=r"latin1.txt' is not UTF-8 \(bad byte 0xe9 at offset 3\)"):
        run("tokenizer", "train", "--data", str(corpus / "data"), "--vocab-size", "300", "--out", str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()  # nothing written on failure
    capsys.readouterr()
    # Through llmkit's main: every TokenizerError is one line on stderr and exit status 1.
    monkeypatch.setattr(cli_main, "EXTRA_MODULES", ("llmkit.cli.tokenizer",))
    for argv, needle in [
        (["--data", str(corpus / "docs.jsonl.gz"), "--vocab-size", "200"], "vocab_size=200 is below the minimum 257"),
        (["--data", str(corpus / "nope"), "--vocab-size", "300"], "does not exist"),
        (["--data", str(corpus / "docs.jsonl.gz"), "--vocab-size", "300"], "has no string field 'text'"),
        (["--data", str(corpus / "data" / "sub"), "--vocab-size", "300", "--pattern", "gtp4"], "unknown pre-tokenizer"),
    ]:
        assert cli_main.main(["tokenizer", "train", *argv, "--out", str(tmp_path / "o"), "--quiet"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert cli_main.main(["tokenizer", "decode", "-t", str(tmp_path / "none"), "1"]) == 1
    assert "not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "e.txt").write_text("")
    argv = ["tokenizer", "train", "--data", str(empty), "--vocab-size", "300", "--out", str(tmp_path / "o")]
    assert cli_main.main(argv) == 1
    assert "corpus is empty" in capsys.readouterr().err


def test_decode_rejects_non_integer_ids(tmp_path):
    Tokenizer(["a", "b"], []).save(tmp_path)
    with pytest.raises(TokenizerError, match="token id 'x1' is not an integer"):
        run("tokenizer", "decode", "-t", str(tmp_path), "[0,", "x1]")


def test_readers(corpus):
    assert list(split_lines("ab\ncd\nef", 4)) == ["ab\n", "cd\n", "ef"]
    assert "".join(split_lines(TEXT, 100)) == TEXT and max(map(len, split_lines(TEXT, 100))) <= 100
    assert list(split_lines("x" * 10, 4)) == ["xxxx", "xxxx", "xx"]  # no newline: cut anyway
    assert list(take_bytes(["ab", "cdé", "fg"], 4)) == ["ab", "cd"]  # "é" is 2 bytes: never split
    docs = list(iter_texts([corpus / "data"], include=["*.md"]))
    assert docs == ["# Notes\n\nSome *markdown* text. " * 30]
    assert len(list(iter_texts([corpus / "docs.jsonl.gz"], field="body"))) == 60

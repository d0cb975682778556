"""`llmkit data prepare` and --tokenizer resolution."""

from __future__ import annotations

import argparse

import pytest

from llmkit.cli import data as cli_data
from llmkit.cli import main as cli_main
from llmkit.core.errors import ModelNotFoundError
from llmkit.data.loader import TokenLoader
from llmkit.data.shards import read_index
from llmkit.data.tokenizer_spec import resolve_tokenizer

from .conftest import make_docs, write_jsonl


@pytest.fixture
def cli(monkeypatch):
    """main() with the data verbs registered (main.py lists them once the lead wires them in)."""
    if "llmkit.cli.data" not in cli_main.EXTRA_MODULES:
        monkeypatch.setattr(cli_main, "EXTRA_MODULES", (*cli_main.EXTRA_MODULES, "llmkit.cli.data"))
        monkeypatch.setattr(cli_main, "EXTRA_VERBS", (*cli_main.EXTRA_VERBS, "data"))
    return cli_main.main


def test_every_option_has_help():
    parser = argparse.ArgumentParser()
    cli_data.register(parser.add_subparsers())
    prepare = parser._subparsers._group_actions[0].choices["data"]._subparsers._group_actions[0].choices["prepare"]
    for action in prepare._actions:
        assert action.help, action.dest


def test_prepare_from_the_command_line(cli, gpt2_path, tmp_path, capsys):
    src = write_jsonl(tmp_path / "docs.jsonl", make_docs(120), field="body")
    out = tmp_path / "data"
    rc = cli(["data", "prepare", "--input", str(src), "--field", "body", "--tokenizer", str(gpt2_path),
              "--out", str(out), "--val-fraction", "0.1", "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "120 documents" in printed and "train:" in printed and "val:" in printed and "uint16" in printed
    index = read_index(out)
    assert index["totals"]["docs"] == 120
    x, y = next(TokenLoader(out, batch_size=2, seq_len=8))
    assert x.shape == (2, 8)


def test_bad_input_is_one_line_and_exit_1(cli, tmp_path, capsys):
    rc = cli(["data", "prepare", "--input", str(tmp_path / "missing"), "--tokenizer", "gpt2",
              "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: ") and err.count("\n") == 1 and "missing" in err
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")  # NUL -> binary, skipped -> empty corpus
    rc = cli(["data", "prepare", "--input", str(tmp_path / "bad.txt"), "--tokenizer", "gpt2",
              "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 1 and "corpus is empty" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_data_verb_alone_prints_help(cli, capsys):
    assert cli(["data"]) == 0
    assert "prepare" in capsys.readouterr().out


def test_resolve_tokenizer_from_files_and_directories(gpt2, gpt2_path, tmp_path):
    sample = "def f(x):\n    return 'naïve' <|endoftext|>"

    def same(tok):
        return tok.vocab_size == gpt2.vocab_size and tok.encode(sample, allowed_special="all") == \
            gpt2.encode(sample, allowed_special="all") and (tok.bos_id, tok.eos_id) == (gpt2.bos_id, gpt2.eos_id)

    gpt2.save(tmp_path / "tok")
    assert same(resolve_tokenizer(gpt2_path))
    assert same(resolve_tokenizer(tmp_path / "tok"))  # checkpoint / HF / saved tokenizer dir
    assert same(resolve_tokenizer(tmp_path / "tok" / "tokenizer.json"))
    (tmp_path / "data").mkdir()
    gpt2.save(tmp_path / "data" / "tokenizer")
    assert same(resolve_tokenizer(tmp_path / "data"))  # a prepared data dir
    assert resolve_tokenizer(gpt2) is gpt2
    with pytest.raises(ModelNotFoundError, match="not found"):
        resolve_tokenizer(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="holds no tokenizer.json"):
        resolve_tokenizer(tmp_path / "empty")


def test_resolve_packaged_smollm2_reads_only_the_gguf_metadata():
    from llmkit.core import assets

    assets.asset_path("smollm2")  # installed by `make test`: missing is a failure
    tok = resolve_tokenizer("smollm2")
    assert tok.vocab_size == 49152 and tok.bos_id is not None and tok.eos_id is not None
    assert tok.decode(tok.encode("def f(x):\n    return x")) == "def f(x):\n    return x"

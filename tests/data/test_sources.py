"""Corpus sources: directories and globs, JSONL fields, binary/non-UTF-8 files, the stdlib corpus."""

from __future__ import annotations

import builtins
import gzip
import json

import pytest

from llmkit.data import sources as S
from llmkit.data.errors import DataError
from llmkit.data.sources import (DataWarning, Directory, JsonlFile, ParquetFile, StdlibSource, TextFile, cap_bytes,
                                 iter_documents, source_for)


@pytest.fixture
def tree(tmp_path):
    """a/x.md, a/y.txt, b/z.md, build/q.md, .git/h.md, blob.bin (binary), top.md"""
    for rel, text in {"a/x.md": "x doc\n", "a/y.txt": "y doc\n", "b/z.md": "z doc\n", "build/q.md": "q doc\n",
                      ".git/h.md": "hidden\n", "top.md": "top doc\n"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    (tmp_path / "blob.bin").write_bytes(b"ELF\x00\x01\x02binary")
    return tmp_path


def test_directory_walk_is_sorted_recursive_and_skips_hidden_and_binary(tree):
    src = Directory(tree)
    assert list(src) == ["x doc\n", "y doc\n", "z doc\n", "q doc\n", "top doc\n"]
    assert src.skipped == {"binary": 1, "undecodable": 0}


def test_directory_include_and_exclude_globs(tree):
    assert list(Directory(tree, include=["*.md"], exclude=["build"])) == ["x doc\n", "z doc\n", "top doc\n"]
    assert list(Directory(tree, include=["a/*"])) == ["x doc\n", "y doc\n"]  # relative-path pattern
    assert list(Directory(tree, include=["*.md"], exclude=["*/x.md", "top.*"])) == ["z doc\n", "q doc\n"]


def test_jsonl_field_plain_and_gzip(tmp_path):
    rows = [{"text": "first", "body": "B1"}, {"text": "second", "body": "B2"}]
    raw = "".join(json.dumps(r) + "\n" for r in rows) + "\n"  # a blank line is ignored
    (tmp_path / "c.jsonl").write_text(raw, encoding="utf-8")
    with gzip.open(tmp_path / "c2.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(raw)
    assert list(source_for(tmp_path / "c.jsonl")) == ["first", "second"]
    assert list(source_for(tmp_path / "c.jsonl", field="body")) == ["B1", "B2"]
    assert list(source_for(tmp_path / "c2.jsonl.gz", field="body")) == ["B1", "B2"]
    # inside a directory, .jsonl files are read by field too
    assert list(Directory(tmp_path, field="body")) == ["B1", "B2", "B1", "B2"]


def test_jsonl_missing_field_names_file_line_and_keys(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"text": "ok"}\n{"content": "no text"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"c\.jsonl:2 has no field 'text' \(found: \['content'\]\).*--field"):
        list(JsonlFile(p))
    p.write_text('{"text": "ok"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"c\.jsonl:2 is not valid JSON"):
        list(JsonlFile(p))


def test_non_utf8_file_is_a_one_line_error_naming_it(tmp_path):
    (tmp_path / "good.txt").write_text("fine\n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(DataError) as e:
        list(Directory(tmp_path))
    msg = str(e.value)
    assert "latin1.txt" in msg and "not UTF-8" in msg and "errors='skip'" in msg and "\n" not in msg


def test_non_utf8_skip_counts_and_warns(tmp_path):
    (tmp_path / "good.txt").write_text("fine\n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
    src = Directory(tmp_path, errors="skip")
    with pytest.warns(DataWarning, match="skipped 1 non-UTF-8"):
        assert list(src) == ["fine\n"]
    assert src.skipped["undecodable"] == 1
    with pytest.raises(DataError, match="errors='bogus'"):
        Directory(tmp_path, errors="bogus")


def test_bom_is_dropped(tmp_path):
    p = tmp_path / "bom.txt"
    p.write_bytes(b"\xef\xbb\xbfhello\n")
    assert list(TextFile(p)) == ["hello\n"]


def test_large_text_file_is_cut_at_line_ends_and_loses_nothing(tmp_path):
    text = "".join(f"line {i} ünïcode\n" for i in range(500))
    p = tmp_path / "big.txt"
    p.write_text(text, encoding="utf-8")
    pieces = list(TextFile(p, chunk_bytes=1000))
    assert len(pieces) > 5
    assert "".join(pieces) == text
    assert all(piece.endswith("\n") for piece in pieces)


def test_empty_corpus_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="corpus is empty"):
        list(iter_documents([Directory(tmp_path)]))
    (tmp_path / "only.bin").write_bytes(b"\x00\x00")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match=r"corpus is empty.*'binary': 1"):
        list(iter_documents(Directory(tmp_path)))
    with pytest.raises(DataError, match="matches nothing|corpus is empty"):
        list(iter_documents(Directory(tmp_path, include=["*.md"])))
    with pytest.raises(DataError, match="does not exist"):
        source_for(tmp_path / "nope")


def test_cap_bytes_is_exact_and_never_splits_a_character():
    docs = ["aaaa", "é" * 10, "never reached"]
    out = list(cap_bytes(docs, 9))  # 4 bytes + 5 bytes of "éééé..." -> the cut lands mid-character
    assert out == ["aaaa", "éé"]
    assert sum(len(d.encode()) for d in out) <= 9
    assert list(cap_bytes(docs, None)) == docs


def test_stdlib_corpus_is_nonempty_deterministic_and_skips_tests():
    files = list(StdlibSource().files())
    assert len(files) > 100
    assert any(f.name == "os.py" for f in files)
    assert not [f for f in files if {"test", "tests", "site-packages", "__pycache__"} & set(f.parts)]
    a = list(StdlibSource(max_bytes=300_000))
    b = list(StdlibSource(max_bytes=300_000))
    assert a == b and len(a) > 1
    assert sum(len(d.encode()) for d in a) == 300_000
    assert any('"""' in d for d in a)  # code plus docstrings


def test_parquet_without_pyarrow_names_the_pip_command(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    p = tmp_path / "t.parquet"
    p.write_bytes(b"PAR1")
    assert isinstance(source_for(p), ParquetFile)
    with pytest.raises(DataError, match="pip install pyarrow"):
        list(source_for(p))


def test_parquet_column(tmp_path):
    import pyarrow as pa  # a test extra: missing must fail, not skip
    import pyarrow.parquet as pq  # a test extra: missing must fail, not skip
    p = tmp_path / "t.parquet"
    pq.write_table(pa.table({"content": ["one", None, "two"], "n": [1, 2, 3]}), p)
    assert list(source_for(p, field="content")) == ["one", "two"]
    with pytest.raises(DataError, match="no column 'text'"):
        list(source_for(p))
    assert S.PYARROW_FIX.startswith("run: pip install")


def test_bad_byte_deep_in_a_large_file_reports_its_file_offset(tmp_path):
    p = tmp_path / "big.txt"
    p.write_bytes(b"abcdefghi\n" * 300 + b"\xff\n")
    with pytest.raises(DataError, match=r"big\.txt is not UTF-8 text \(byte 0xff at offset 3000\)"):
        list(TextFile(p, chunk_bytes=1000))
    with pytest.warns(DataWarning):
        # errors="skip" drops the whole ~chunk_bytes piece holding the bad byte, keeps the rest
        kept = "".join(TextFile(p, errors="skip", chunk_bytes=1000))
    assert 1000 <= len(kept) < 3000 and set(kept.splitlines()) == {"abcdefghi"}

"""Loaders and splitters on files the tests write: formats, metadata, bad files, symlinks, overlap."""

import json
import os

import pytest

from llmkit.core.errors import ConfigError
from llmkit.rag.loaders import LoaderError, html_text, load_file, load_tree
from llmkit.rag.splitters import SplitConfig, chunk_id, markdown_sections, split_documents, split_text

MD = """# Guide

Intro paragraph.

## Install

Run pip install.

```python
# not a heading
x = 1
```

### Offline

Works without network.
"""


def make_pdf(path, pages):
    import pypdf
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    w = pypdf.PdfWriter()
    for text in pages:
        page = w.add_blank_page(612, 792)
        font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                                 NameObject("/BaseFont"): NameObject("/Helvetica")})
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
        page[NameObject("/Contents")] = w._add_object(stream)
    with open(path, "wb") as f:
        w.write(f)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "guide.md").write_text(MD)
    (root / "notes.txt").write_text("Plain notes about retrieval.")
    (root / "page.html").write_text("<html><head><title>My Page</title><script>var x=1;</script></head><body>"
                                    "<nav>Home | About</nav><main><h1>Hello</h1><p>Main &amp; body text.</p></main>"
                                    "<footer>copyright</footer></body></html>")
    (root / "sub" / "code.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "sub" / "rows.jsonl").write_text(json.dumps({"q": "What?", "a": "That.", "year": 2020}) + "\n"
                                             + json.dumps({"q": "Who?", "a": "Them.", "year": 2021}) + "\n")
    (root / "empty.txt").write_text("  \n")
    (root / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    make_pdf(root / "paper.pdf", ["First page text", "Second page text"])
    outside = tmp_path / "secret.txt"
    outside.write_text("do not ingest me")
    os.symlink(outside, root / "link.txt")
    os.symlink(root / "notes.txt", root / "inner_link.txt")  # inside the root: allowed
    return root


def test_load_tree_formats_metadata_and_bad_files(tree):
    rep = load_tree(tree, json_fields=("q", "a"))
    by = {}
    for d in rep.documents:
        by.setdefault(d.metadata["source"], []).append(d)
    assert by["guide.md"][0].metadata["title"] == "Guide" and by["guide.md"][0].metadata["kind"] == "markdown"
    html = by["page.html"][0]
    assert html.metadata["title"] == "My Page" and "Main & body text." in html.text
    assert "Home" not in html.text and "copyright" not in html.text and "var x" not in html.text
    assert [d.metadata["page"] for d in by["paper.pdf"]] == [1, 2] and "Second page" in by["paper.pdf"][1].text
    rows = by["sub/rows.jsonl"]
    assert rows[0].text == "What?\nThat." and rows[1].metadata["year"] == 2021 and rows[1].metadata["record"] == 1
    assert by["sub/code.py"][0].metadata["language"] == "python"
    assert "inner_link.txt" in by and all(isinstance(d.metadata["mtime"], float) for d in rep.documents)
    skipped = {os.path.basename(p): why for p, why in rep.skipped}
    assert set(skipped) == {"empty.txt", "blob.txt", "broken.pdf", "link.txt"}
    assert "binary" in skipped["blob.txt"] and "PDF" in skipped["broken.pdf"] and "outside" in skipped["link.txt"]
    assert not any("do not ingest" in d.text for d in rep.documents)


def test_include_exclude_globs(tree):
    rep = load_tree(tree, include=("*.md", "sub/*"), exclude=("*.jsonl",))
    assert sorted({d.metadata["source"] for d in rep.documents}) == ["guide.md", "sub/code.py"]


def test_missing_path_and_empty_file(tmp_path):
    with pytest.raises(LoaderError, match="does not exist"):
        load_tree(tmp_path / "nope")
    (tmp_path / "e.md").write_text("")
    with pytest.raises(LoaderError, match="no text"):
        load_file(tmp_path / "e.md")


def test_html_prefers_main():
    title, text = html_text("<title>T</title><div>sidebar</div><article><h2>Sec</h2><p>a<br>b</p></article>")
    assert title == "T" and "sidebar" not in text and "## Sec" in text


def test_markdown_sections_skip_code_fences():
    secs = markdown_sections(MD)
    assert [h for h, _ in secs] == [["Guide"], ["Guide", "Install"], ["Guide", "Install", "Offline"]]
    assert "# not a heading" in secs[1][1]


def test_split_text_sizes_overlap_and_coverage():
    words = [f"w{i}" for i in range(400)]
    text = " ".join(words)
    chunks = split_text(text, chunk_size=100, overlap=30)
    assert all(len(c) <= 100 for c in chunks) and len(chunks) > 10
    covered = set(" ".join(chunks).split())
    assert covered == set(words)  # nothing lost
    for a, b in zip(chunks, chunks[1:]):  # each chunk starts with the tail of the previous one
        assert a.split()[-1] in b.split()[:10]


def test_split_text_prefers_paragraphs():
    text = "alpha beta gamma.\n\ndelta epsilon.\n\nzeta eta theta."
    assert split_text(text, chunk_size=20, overlap=0) == ["alpha beta gamma.", "delta epsilon.", "zeta eta theta."]


def test_split_hard_cut_and_bad_config():
    assert split_text("x" * 25, chunk_size=10, overlap=0) == ["x" * 10, "x" * 10, "x" * 5]
    with pytest.raises(ConfigError, match="overlap"):
        split_text("abc", chunk_size=10, overlap=10)
    with pytest.raises(ConfigError, match="tokens"):
        split_documents([], SplitConfig(mode="tokens"))


def test_token_aware_split(embedder):
    from llmkit.rag.loaders import Document
    from llmkit.rag.splitters import token_length

    doc = Document(" ".join(f"Sentence {i} grounds answer {i * 7} in documents." for i in range(80)),
                   {"source": "a.txt"})
    chunks = split_documents([doc], SplitConfig(mode="tokens", chunk_size=64, overlap=8), embedder.tokenizer)
    n = token_length(embedder.tokenizer)
    assert len(chunks) > 5 and all(n(c.text) <= 64 for c in chunks)


def test_markdown_chunks_carry_headings_and_stable_ids(tree):
    docs = load_file(tree / "guide.md", tree)
    a = split_documents(docs, SplitConfig(chunk_size=200, overlap=20))
    b = split_documents(load_file(tree / "guide.md", tree), SplitConfig(chunk_size=200, overlap=20))
    assert [c.id for c in a] == [c.id for c in b]
    assert a[-1].metadata["headings"] == "Guide > Install > Offline" and a[0].metadata["source"] == "guide.md"
    assert a[0].id == chunk_id("guide.md#", a[0].text) and len({c.id for c in a}) == len(a)

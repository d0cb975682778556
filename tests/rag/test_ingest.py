"""Ingest end to end: idempotent re-runs, changed files, bad files reported, SIGKILL mid-ingest."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from llmkit.rag.ingest import ingest
from llmkit.rag.splitters import SplitConfig
from llmkit.rag.sqlite_store import SQLiteStore

from .conftest import fresh_pg_store

ROOT = Path(__file__).resolve().parents[2]


def write_corpus(root: Path, n: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"f{i:03d}.md").write_text(f"# File {i}\n\nFact {i}: the number {i} squared is {i * i}.\n\n"
                                           f"## Details\n\nMore words about item {i} and its neighbours.\n")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_reingest_is_idempotent_and_replaces_changed(kind, tmp_path, embedder, request):
    docs = tmp_path / "docs"
    write_corpus(docs, 4)
    (docs / "bad.txt").write_bytes(b"\x00\xffbinary")
    store = SQLiteStore(tmp_path / "s.sqlite") if kind == "sqlite" else fresh_pg_store(request.getfixturevalue("pg_dsn"))
    rep = ingest(docs, store, "c", embedder)
    assert len(rep.added) == 4 and [os.path.basename(p) for p, _ in rep.skipped] == ["bad.txt"]
    n = store.count("c")
    assert n == rep.chunks and store.count("c", {"source": "docs/f001.md"}) == 2
    rep2 = ingest(docs, store, "c", embedder)
    assert rep2.added == [] and len(rep2.unchanged) == 4 and store.count("c") == n
    (docs / "f001.md").write_text("# File 1\n\nRewritten: only one section now.\n")
    rep3 = ingest(docs, store, "c", embedder)
    assert rep3.added == ["docs/f001.md"] and store.count("c") == n - 1
    hits = store.search("c", embedder.embed_query("What was rewritten?"), 1)
    assert hits[0].source == "docs/f001.md" and hits[0].metadata["headings"] == "File 1"
    rep4 = ingest(docs, store, "c", embedder, SplitConfig(chunk_size=40, overlap=10))  # new settings re-chunk
    assert len(rep4.added) == 4 and store.count("c") > n
    store.close()


def consistent(db_path: Path) -> tuple[int, int]:
    """Check the invariants a crash must not break; returns (documents, chunks)."""
    db = sqlite3.connect(db_path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    cid = db.execute("SELECT id FROM collections WHERE name = 'c'").fetchone()[0]
    for source, n in db.execute("SELECT source, n_chunks FROM documents WHERE cid = ?", (cid,)):
        assert db.execute("SELECT count(*) FROM chunks WHERE cid = ? AND source = ?", (cid, source)).fetchone()[0] == n
    orphans = db.execute("SELECT count(*) FROM chunks c LEFT JOIN documents d ON d.cid = c.cid AND d.source = c.source "
                         "WHERE d.source IS NULL").fetchone()[0]
    fts = db.execute(f"SELECT count(*) FROM fts_{cid}").fetchone()[0]
    chunks = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
    docs = db.execute("SELECT count(*) FROM documents").fetchone()[0]
    assert orphans == 0 and fts == chunks
    db.close()
    return docs, chunks


@pytest.mark.slow
def test_sigkill_mid_ingest_then_rerun(tmp_path, embedder):
    docs, db_path = tmp_path / "docs", tmp_path / "s.sqlite"
    write_corpus(docs, 60)
    script = textwrap.dedent(f"""
        from llmkit.generate.embed import load_embedder
        from llmkit.rag.ingest import ingest
        from llmkit.rag.sqlite_store import SQLiteStore
        ingest({str(docs)!r}, SQLiteStore({str(db_path)!r}), "c", load_embedder())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    deadline = time.time() + 240
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if db_path.exists():
            try:
                with sqlite3.connect(db_path, timeout=1) as db:
                    done = db.execute("SELECT count(*) FROM documents").fetchone()[0]
            except sqlite3.OperationalError:  # schema not there yet
                done = 0
            if done >= 3:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_docs, _ = consistent(db_path)
    assert 3 <= n_docs < 60  # killed midway, not before or after
    store = SQLiteStore(db_path)
    rep = ingest(docs, store, "c", embedder)
    assert len(rep.unchanged) == n_docs and len(rep.added) == 60 - n_docs
    store.close()
    n_docs, n_chunks = consistent(db_path)
    assert n_docs == 60 and n_chunks == 120  # two sections per file, no duplicates
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT count(DISTINCT id) FROM chunks").fetchone()[0] == 120

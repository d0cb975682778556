"""`llmkit rag` as a user meets it: ingest, query, ls, rm, one-line errors; ask with SmolLM2 (slow)."""

import contextlib
import io
import json
import subprocess

import pytest

from llmkit.cli.main import main
from tests.test_cli import assert_one_line_error


def run(*args):
    """In-process (the embedder loads once per test session, not per call), same exit codes and streams."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "notes"
    root.mkdir()
    (root / "capitals.md").write_text("# Capitals\n\n## Europe\n\nParis is the capital of France.\n\n"
                                      "## Asia\n\nTokyo is the capital of Japan.\n")
    (root / "ops.txt").write_text("Error code ZX-4411 means the disk quota was exceeded.\n")
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    return root


@pytest.fixture(scope="module")
def db(corpus):
    db = corpus.parent / "store.sqlite"
    proc = run("rag", "ingest", str(corpus), "--collection", "notes", "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    assert "2 files ingested (3 chunks)" in proc.stdout and "1 skipped" in proc.stdout
    assert "broken.pdf" in proc.stderr and "not a readable PDF" in proc.stderr
    assert "EOF marker" not in proc.stderr  # pypdf's own warnings stay out of the report
    return db


def test_ingest_again_skips_unchanged(corpus, db):
    proc = run("rag", "ingest", str(corpus), "--collection", "notes", "--db", str(db), "--no-progress")
    assert "0 files ingested (0 chunks), 2 unchanged" in proc.stdout


def test_query_modes_and_filter(db):
    proc = run("rag", "query", "ZX-4411", "-c", "notes", "--db", str(db), "--mode", "bm25", "-k", "1", "--json")
    hits = json.loads(proc.stdout)
    assert len(hits) == 1 and hits[0]["source"] == "notes/ops.txt"
    proc = run("rag", "query", "capital of Japan", "-c", "notes", "--db", str(db), "-k", "1")
    assert "notes/capitals.md › Capitals > Asia" in proc.stdout
    proc = run("rag", "query", "capital", "-c", "notes", "--db", str(db), "--where", '{"kind": "text"}', "--json")
    assert {h["source"] for h in json.loads(proc.stdout)} == {"notes/ops.txt"}


def test_ls_and_rm(corpus, tmp_path):
    db = tmp_path / "s.sqlite"
    run("rag", "ingest", str(corpus / "ops.txt"), "-c", "x", "--db", str(db), "--no-progress")
    assert "x " in run("rag", "ls", "--db", str(db)).stdout
    assert "removed 1 chunks and collection 'x'" in run("rag", "rm", "x", "--db", str(db)).stdout
    assert run("rag", "ls", "--db", str(db)).stdout.strip() == ""


def test_one_line_errors(db, tmp_path):
    assert_one_line_error(run("rag", "query", "x", "-c", "nope", "--db", str(db)), "'nope'", "existing: notes")
    assert_one_line_error(run("rag", "query", "x", "-c", "notes", "--db", str(db), "--where", "{bad"), "not JSON")
    assert_one_line_error(run("rag", "query", "x", "-c", "notes", "--db", str(db), "--where", '{"a": {"$re": 1}}'),
                          "$re")
    assert_one_line_error(run("rag", "ingest", str(tmp_path / "missing"), "--db", str(db)), "does not exist")
    assert_one_line_error(run("rag", "query", "x", "--store", "postgres", "--db", str(db)), "not a PostgreSQL DSN")


@pytest.mark.slow
def test_ask_streams_cited_answer(db):
    proc = run("rag", "ask", "What is the capital of France?", "-c", "notes", "--db", str(db), "-k", "2",
               "--max-tokens", "40")
    assert proc.returncode == 0, proc.stderr
    answer, sources = proc.stdout.split("\nSources:\n")
    assert "Paris" in answer and "[1]" in answer
    assert "notes/capitals.md › Capitals > Europe" in sources


class ChatLLM:
    """Condenses follow-ups by a rule and answers from the first source: the test is about the loop."""

    def __init__(self):
        self.prompts = []

    def complete(self, messages, max_tokens=256, temperature=0.0, seed=None):
        self.prompts.append(messages)
        text = messages[-1]["content"]
        if "Last question:" in text:
            return "What is the capital of Japan?"  # the standalone rewrite of "And of Japan?"
        question = text.rsplit("Question:", 1)[-1].split("\n", 1)[0]
        return "Tokyo [1]." if "Japan" in question else "Paris [1]."

    def stream(self, messages, max_tokens=256, temperature=0.0, seed=None):
        yield self.complete(messages)

    def n_tokens(self, text):
        return len(text.split())


def test_rag_chat_condenses_follow_ups_with_the_history(db):
    from llmkit.rag.api import rag_chat

    lines = iter(["What is the capital of France?", "And of Japan?", "/sources", "/reset", "/exit"])
    said, llm = [], ChatLLM()
    n = rag_chat("notes", db=str(db), llm=llm, read=lambda _: next(lines), write=said.append)
    assert n == 2 and said[1] == "Paris [1]." and "Tokyo [1]." in said
    condense = [p for p in llm.prompts if "Last question: And of Japan?" in p[-1]["content"]]
    assert condense and "capital of France" in condense[0][-1]["content"]  # the history went into the rewrite
    assert any("notes/capitals.md" in s for s in said)  # /sources lists the last answer's sources
    assert said[-1] == "(conversation cleared)"
    assert rag_chat("notes", db=str(db), llm=llm, read=lambda _: (_ for _ in ()).throw(EOFError), write=said.append) == 0

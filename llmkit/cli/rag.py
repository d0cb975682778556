"""`llmkit rag ...`: argument parsing and printing; the work is llmkit.rag.api."""

from __future__ import annotations

import argparse
import json
import sys


def _store_args(p: argparse.ArgumentParser, collection: bool = True) -> None:
    if collection:
        p.add_argument("--collection", "-c", default="docs", help="collection name (default %(default)s)")
    p.add_argument("--store", default="sqlite", choices=["sqlite", "postgres"],
                   help="store backend (default %(default)s: one SQLite file + HNSW index; postgres: pgvector HNSW + "
                        "tsvector BM25)")
    p.add_argument("--db", default=None, help="SQLite file (default $LLMKIT_RAG_STORE or ~/.cache/llmkit/rag/store.sqlite), or with "
                        "--store postgres a DSN (default $LLMKIT_PG_DSN, else an embedded PostgreSQL + pgvector "
                        "server in ~/.cache/llmkit/rag/pgdata, started on demand)")


def _retrieval_args(p: argparse.ArgumentParser, k: int) -> None:
    p.add_argument("-k", type=int, default=k, help="number of chunks to return (default %(default)s)")
    p.add_argument("--where", default=None, help='metadata filter as JSON, e.g. \'{"kind": "markdown"}\'')
    p.add_argument("--mode", default="hybrid", choices=["dense", "bm25", "hybrid"], help="retriever (default %(default)s)")
    p.add_argument("--fusion", default="cc", choices=["cc", "rrf"],
                   help="hybrid: cc = weighted sum of min-max scaled scores, rrf = reciprocal rank fusion "
                        "(default %(default)s)")
    p.add_argument("--alpha", type=float, default=0.5,
                   help="hybrid cc: weight of the BM25 score, 1 - alpha goes to the dense one (default %(default)s)")
    p.add_argument("--mmr", action="store_true", help="diversify results with maximal marginal relevance")
    p.add_argument("--rerank", action="store_true", help="re-rank candidates by SmolLM2 query likelihood (slow)")
    p.add_argument("--transform", default=None, choices=["hyde", "multi"],
                   help="query transform with SmolLM2: hyde (hypothetical answer) or multi (RAG-fusion)")


def _cfg(a):
    from llmkit.rag.retrieve import RetrievalConfig

    return RetrievalConfig(mode=a.mode, k=a.k, where=a.where, fusion=a.fusion, alpha=a.alpha, mmr=a.mmr,
                           rerank=a.rerank, transform=a.transform)


def _llm_if_needed(a):
    if a.rerank or a.transform:
        from llmkit.rag.llm import load_llm

        return load_llm()
    return None


def _hooks(a):
    """--guard: llmkit.guard's defences as the pipeline's prompt hooks (composed here: rag sits below guard)."""
    if not getattr(a, "guard", False):
        return None
    from llmkit.guard import Guard
    from llmkit.guard.wiring import rag_hooks

    return rag_hooks(Guard())


def _guard_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--guard", action="store_true",
                   help="prompt-injection defences: spotlighted chunks, instruction-hierarchy prompt, "
                        "injection detector, canary leak check, PII redaction (docs/security.md)")


def cmd_ingest(a) -> None:
    from llmkit.rag.api import rag_ingest
    from llmkit.rag.splitters import SplitConfig

    split = SplitConfig(a.split, a.chunk_size, a.overlap)
    rep = rag_ingest(a.path, a.collection, a.store, a.db, a.embedder, split, a.include, a.exclude,
                     [f for f in a.json_fields.split(",") if f], not a.no_progress)
    for path, why in rep.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    print(f"{a.collection}: {rep.summary()}")


def _print_hits(hits, as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"id": h.id, "score": h.score, "source": h.source, "metadata": h.metadata,
                           "text": h.text, "ranks": h.sources} for h in hits], ensure_ascii=False, indent=2))
        return
    for i, h in enumerate(hits, 1):
        section = h.metadata.get("headings") or ""
        print(f"[{i}] {h.score:.4f}  {h.source}" + (f" › {section}" if section else ""))
        snippet = " ".join(h.text.split())
        print(f"    {snippet[:200]}{'…' if len(snippet) > 200 else ''}")


def cmd_query(a) -> None:
    from llmkit.rag.api import rag_query

    _print_hits(rag_query(a.query, a.collection, _cfg(a), a.store, a.db, _llm_if_needed(a)), a.json)


def cmd_ask(a) -> None:
    from llmkit.rag.api import rag_ask

    def out(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    ans = rag_ask(a.question, a.collection, _cfg(a), a.answer_mode, (), a.store, a.db, a.model, out,
                  max_tokens=a.max_tokens, hooks=_hooks(a), min_grounded=a.min_grounded)
    print()
    if ans.generated is not None:
        print(f"\n(Only {ans.grounded:.0%} of that answer is supported by the sources, under --min-grounded "
              f"{a.min_grounded:g}. What the sources say:)\n{ans.text}")
    if ans.attributed:
        print(f"\n(cited by word overlap: {ans.text})")
    print("\nSources:")
    for c in ans.citations:
        print(("* " if c.n in ans.cited else "  ") + c.label())


def cmd_chat(a) -> None:
    from llmkit.rag.api import rag_chat

    def out(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    rag_chat(a.collection, _cfg(a), a.answer_mode, a.store, a.db, a.model, max_tokens=a.max_tokens,
             hooks=_hooks(a), turns=a.turns, stream=out)


def cmd_eval(a) -> None:
    from llmkit.rag.api import rag_eval
    from llmkit.rag.evaluate import markdown_table

    cfg = _cfg(a)
    res = rag_eval(a.dataset, a.limit, a.answers, a.store, a.db, hooks=_hooks(a), llm=_llm_if_needed(a), cfg=cfg)
    print(f"{res['dataset']}: {res['questions']} questions over {res['passages']} passages "
          f"({res['chunks']} chunks of <= 200 tokens)")
    print(markdown_table(res["retrieval"]), end="")
    if "answer_in_corpus" in res:
        print(f"questions with an answer anywhere in the corpus: {res['answer_in_corpus']:.3f} (the recall ceiling)")
    if "answers" in res:
        r = res["answers"]
        print(f"answers ({cfg.mode} k={cfg.k}, SmolLM2, {r['n']} questions): EM {r['em']:.3f}  F1 {r['f1']:.3f}  "
              f"groundedness {r['groundedness']:.3f}")


def cmd_ls(a) -> None:
    from llmkit.rag.api import rag_ls

    for c in rag_ls(a.store, a.db):
        print(f"{c.name:<24} {c.documents:>6} files {c.chunks:>8} chunks  {c.dim}-d {c.embedder}")


def cmd_rm(a) -> None:
    from llmkit.rag.api import rag_rm

    n = rag_rm(a.collection, a.source, a.where, a.store, a.db)
    print(f"removed {n} chunks" + ("" if a.source or a.where else f" and collection {a.collection!r}"))


def _answer_args(q) -> None:
    q.add_argument("--answer-mode", default="stuff", choices=["stuff", "refine", "map_reduce", "extract"],
                   help="how chunks reach the model; extract quotes the source sentences closest to the "
                        "question, without the model (default %(default)s)")
    q.add_argument("--model", "-m", default="smollm2", help="generator model (default %(default)s)")
    q.add_argument("--max-tokens", type=int, default=160, help="longest answer in tokens (default %(default)s)")


def register(sub) -> None:
    p = sub.add_parser("rag", help="retrieval-augmented generation: ingest, query, ask, eval",
                       description="Index documents into a vector store and answer questions with cited sources.")
    rs = p.add_subparsers(dest="rag_verb", metavar="ACTION", required=True)

    q = rs.add_parser("ingest", help="index files (txt, md, html, pdf, json/jsonl, code)")
    q.add_argument("path", help="file or directory to ingest")
    _store_args(q)
    q.add_argument("--include", action="append", default=[], help="glob of files to take (repeatable)")
    q.add_argument("--exclude", action="append", default=[], help="glob of files to leave out (repeatable)")
    q.add_argument("--json-fields", default="", help="comma-separated JSON fields to index as text")
    q.add_argument("--split", default="auto", choices=["auto", "recursive", "tokens", "markdown"],
                   help="splitter (default %(default)s: Markdown headers for .md/.html)")
    q.add_argument("--chunk-size", type=int, default=800, help="chunk size, characters or tokens (default %(default)s)")
    q.add_argument("--overlap", type=int, default=100, help="overlap between chunks (default %(default)s)")
    q.add_argument("--embedder", default="minilm", help="embedder: minilm or a sentence-transformers BERT dir")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_ingest)

    q = rs.add_parser("query", help="retrieve the chunks that match a query")
    q.add_argument("query", help="search text")
    _store_args(q)
    _retrieval_args(q, 5)
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=cmd_query)

    q = rs.add_parser("ask", help="answer a question from the collection, citing sources")
    q.add_argument("question", help="the question")
    _store_args(q)
    _retrieval_args(q, 4)
    _answer_args(q)
    q.add_argument("--min-grounded", type=float, default=0.5,
                   help="if fewer of the answer's sentences than this share are supported by the sources, also "
                        "show the extract (the source sentences closest to the question); 0 turns the check off "
                        "(default %(default)s)")
    _guard_arg(q)
    q.set_defaults(func=cmd_ask)

    q = rs.add_parser("chat", help="a conversation over the collection: follow-up questions are condensed "
                                   "with the history into standalone queries",
                      description="Interactive RAG. Each question is rewritten with the last --turns exchanges "
                                  "into a standalone query (\"what about its battery?\" -> \"what is the battery "
                                  "life of the Orbit Lamp?\"), retrieved for, and answered with citations. "
                                  "Commands: /reset, /sources, /exit.")
    _store_args(q)
    _retrieval_args(q, 4)
    _answer_args(q)
    q.add_argument("--turns", type=int, default=6, help="past exchanges used to condense a follow-up (default %(default)s)")
    _guard_arg(q)
    q.set_defaults(func=cmd_chat)

    q = rs.add_parser("eval", help="retrieval recall@k / MRR (and answer EM/F1) on SQuAD or NQ-open")
    q.add_argument("--dataset", default="squad", choices=["squad", "nq_open"],
                   help="squad: 1000 questions over their 803 paragraphs; nq_open: 1000 questions over the "
                        "lead sections of ~10k Wikipedia Vital Articles (default %(default)s)")
    q.add_argument("--limit", type=int, default=None, help="first N questions only")
    q.add_argument("--answers", type=int, default=0, help="also generate and score answers for N questions")
    _retrieval_args(q, k=2)
    _guard_arg(q)
    _store_args(q, collection=False)
    q.set_defaults(func=cmd_eval)

    q = rs.add_parser("ls", help="list collections")
    _store_args(q, collection=False)
    q.set_defaults(func=cmd_ls)

    q = rs.add_parser("rm", help="delete a collection, or chunks by --source / --where")
    q.add_argument("collection", help="collection name")
    q.add_argument("--source", default=None, help="delete only this source file's chunks")
    q.add_argument("--where", default=None, help="delete only chunks matching this JSON filter")
    _store_args(q, collection=False)
    q.set_defaults(func=cmd_rm)

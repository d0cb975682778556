"""Typed functions behind `llmkit rag ...` (also the Python entry points)."""

from __future__ import annotations

import os
from typing import Callable, Sequence

from llmkit.generate.embed import cached_embedder
from llmkit.rag.ingest import IngestReport, ingest
from llmkit.rag.pipeline import Answer, Pipeline, PromptHooks
from llmkit.rag.retrieve import RetrievalConfig, Retriever
from llmkit.rag.splitters import SplitConfig
from llmkit.rag.store import CollectionInfo, Hit, open_store

DEFAULT_COLLECTION = "docs"


def rag_ingest(path: str | os.PathLike, collection: str = DEFAULT_COLLECTION, store: str = "sqlite",
               db: str | None = None, embedder: str = "minilm", split: SplitConfig = SplitConfig(),
               include: Sequence[str] = (), exclude: Sequence[str] = (), json_fields: Sequence[str] = (),
               progress: bool = False) -> IngestReport:
    with open_store(store, db) as st:
        return ingest(path, st, collection, cached_embedder(str(embedder)), split, include, exclude, json_fields,
                      progress)


def _embedder_for(st, collection: str):
    return cached_embedder(st.collection(collection).embedder)


def rag_query(query: str, collection: str = DEFAULT_COLLECTION, cfg: RetrievalConfig = RetrievalConfig(),
              store: str = "sqlite", db: str | None = None, llm=None) -> list[Hit]:
    with open_store(store, db) as st:
        retriever = Retriever(st, collection, _embedder_for(st, collection), llm)
        return retriever.retrieve(query, cfg)


def rag_ask(question: str, collection: str = DEFAULT_COLLECTION, cfg: RetrievalConfig = RetrievalConfig(),
            mode: str = "stuff", history: Sequence[dict] = (), store: str = "sqlite", db: str | None = None,
            model: str = "smollm2", on_token: Callable[[str], None] | None = None, llm=None,
            max_tokens: int = 160, hooks: PromptHooks | None = None, min_grounded: float = 0.5) -> Answer:
    """A cited answer. When less than ``min_grounded`` of the model's sentences are supported by the
    sources, the answer becomes the extract (the source sentences closest to the question) and
    ``Answer.generated`` keeps the model's text; 0 turns the check off."""
    from llmkit.rag.llm import load_llm

    with open_store(store, db) as st:
        emb = _embedder_for(st, collection)  # a missing collection fails before the model loads
        llm = llm or load_llm(model)
        pipeline = Pipeline(Retriever(st, collection, emb, llm), llm, max_tokens=max_tokens, hooks=hooks,
                            min_grounded=min_grounded)
        return pipeline.answer(question, cfg, mode, history, on_token)


CHAT_HELP = "commands: /reset (forget the conversation), /sources (of the last answer), /exit"


def rag_chat(collection: str = DEFAULT_COLLECTION, cfg: RetrievalConfig = RetrievalConfig(), mode: str = "stuff",
             store: str = "sqlite", db: str | None = None, model: str = "smollm2", llm=None, max_tokens: int = 160,
             hooks: PromptHooks | None = None, turns: int = 6, read: Callable[[str], str] = input,
             write: Callable[[str], object] = print, stream: Callable[[str], None] | None = None) -> int:
    """Conversational RAG: each question is condensed with the last ``turns`` exchanges into a standalone
    query, retrieved for and answered with citations; returns the number of questions answered.

    ``write`` gets whole lines; with ``stream`` the answer's tokens go there as they come instead.
    """
    from llmkit.rag.llm import load_llm

    with open_store(store, db) as st:
        emb = _embedder_for(st, collection)
        llm = llm or load_llm(model)
        pipeline = Pipeline(Retriever(st, collection, emb, llm), llm, max_tokens=max_tokens, hooks=hooks)
        history: list[dict] = []
        last: Answer | None = None
        answered = 0
        write(CHAT_HELP)
        while True:
            try:
                line = read(">>> ").strip()
            except (EOFError, KeyboardInterrupt):
                return answered
            if not line:
                continue
            if line in ("/exit", "/quit"):
                return answered
            if line == "/reset":
                history, last = [], None
                write("(conversation cleared)")
                continue
            if line == "/sources":
                write("\n".join(c.label() for c in last.citations) if last else "(no answer yet)")
                continue
            last = pipeline.answer(line, cfg, mode, history[-2 * turns:], stream)
            write("" if stream else last.text)
            cited = [c.label() for c in last.citations if c.n in last.cited]
            if cited:
                write("[" + "; ".join(cited) + "]")
            history += [{"role": "user", "content": line}, {"role": "assistant", "content": last.text}]
            answered += 1


def rag_ls(store: str = "sqlite", db: str | None = None) -> list[CollectionInfo]:
    with open_store(store, db) as st:
        return st.list_collections()


def rag_rm(collection: str, source: str | None = None, where: str | dict | None = None, store: str = "sqlite",
           db: str | None = None) -> int:
    """Drop a whole collection (returns its chunk count), or only chunks of a source / matching a filter."""
    with open_store(store, db) as st:
        if source is None and where is None:
            n = st.collection(collection).chunks
            st.drop_collection(collection)
            return n
        return st.delete(collection, where=where, source=source)


EVAL_DATASETS = ("squad", "nq_open")


def rag_eval(dataset: str = "squad", limit: int | None = None, answers: int = 0, store: str = "sqlite",
             db: str | None = None, progress: bool = False, hooks: PromptHooks | None = None, llm=None,
             cfg: RetrievalConfig = RetrievalConfig(k=2)) -> dict:
    """Retrieval recall@1/5/10 + MRR for dense, BM25 and hybrid on SQuAD or NQ-open; EM/F1/groundedness of
    ``answers`` generated answers (through ``hooks``, e.g. a guard's, when given) with ``cfg``'s retrieval."""
    from dataclasses import replace

    from llmkit.core.errors import ConfigError
    from llmkit.rag.evaluate import chunk_passages, eval_answers, eval_retrieval, nq_items, squad_items

    if dataset not in EVAL_DATASETS:
        raise ConfigError(f"unknown RAG eval dataset {dataset!r}", "use --dataset squad or nq_open")
    passages, items = (squad_items if dataset == "squad" else nq_items)(limit)
    emb = cached_embedder()
    chunks = chunk_passages(passages, emb.tokenizer)
    name = f"eval-{dataset.replace('_', '-')}-{len(passages)}"
    with open_store(store, db) as st:
        st.create_collection(name, emb.dim, emb.name)
        if st.count(name) != len(chunks):
            st.delete(name, where={"passage": {"$ne": ""}})
            st.upsert(name, chunks, emb.embed([c.text for c in chunks]))
            st.prepare(name)
        retriever = Retriever(st, name, emb, llm)  # an llm is needed only for transforms and re-ranking
        configs = {m: replace(cfg, mode=m) for m in ("dense", "bm25", "hybrid")}
        out = {"dataset": dataset, "questions": len(items), "passages": len(passages), "chunks": len(chunks),
               "retrieval": eval_retrieval(retriever, items, configs)}
        if dataset == "nq_open":
            from llmkit.rag.evaluate import answer_ceiling

            out["answer_in_corpus"] = answer_ceiling(passages, items)
        if answers:
            from llmkit.rag.llm import load_llm

            retriever.llm = llm or load_llm()
            pipeline = Pipeline(retriever, retriever.llm, max_tokens=32, hooks=hooks)
            out["answers"] = eval_answers(pipeline, items[:answers], cfg)
        return out

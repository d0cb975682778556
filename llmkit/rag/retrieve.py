"""Retrieval: dense, BM25, hybrid (score or rank fusion), MMR, LLM re-ranking, HyDE, multi-query.

Everything is configured per query by ``RetrievalConfig``. The math (convex combination, RRF,
MMR) is pure functions with known-value tests; the LLM-driven parts take an ``LLM``
(llmkit.rag.llm).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from llmkit.core.errors import ConfigError
from llmkit.rag.store import Hit, VectorStore

MODES = ("dense", "bm25", "hybrid")
TRANSFORMS = (None, "hyde", "multi")
FUSIONS = ("cc", "rrf")


@dataclass(frozen=True)
class RetrievalConfig:
    mode: str = "hybrid"
    k: int = 5
    fetch_k: int = 0  # candidates per retriever before fusion / MMR / re-ranking; 0 = max(4k, 20)
    where: dict | str | None = None
    fusion: str = "cc"  # hybrid: "cc" (convex combination of min-max scores) or "rrf" (reciprocal rank)
    alpha: float = 0.5  # cc: weight of the BM25 score (1 - alpha goes to the dense one)
    rrf_k: int = 60  # RRF damping: 60 is the value of Cormack et al. and works across collections
    mmr: bool = False
    mmr_lambda: float = 0.5  # 1 = pure relevance, 0 = pure diversity
    rerank: bool = False
    transform: str | None = None  # None, "hyde" or "multi" (multi-query / RAG-fusion)
    n_queries: int = 3  # with transform="multi": rewrites generated besides the original
    exact: bool = False  # dense: exact search instead of HNSW (the oracle)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"unknown retrieval mode {self.mode!r}", "use --mode dense, bm25 or hybrid")
        if self.transform not in TRANSFORMS:
            raise ConfigError(f"unknown query transform {self.transform!r}", "use hyde or multi")
        if self.k < 1:
            raise ConfigError(f"k={self.k}", "ask for at least one result (-k 1 or more)")
        if not 0.0 <= self.mmr_lambda <= 1.0:
            raise ConfigError(f"mmr_lambda={self.mmr_lambda}", "use a value in [0, 1]")
        if self.fusion not in FUSIONS:
            raise ConfigError(f"unknown fusion {self.fusion!r}", "use --fusion cc or rrf")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha={self.alpha}", "use a BM25 weight in [0, 1]")

    @property
    def candidates(self) -> int:
        return self.fetch_k or max(4 * self.k, 20)


def rrf(rankings: Sequence[Sequence[str]], k: int = 60) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: score(d) = sum over rankings of 1 / (k + rank), rank from 1. Best first.

    Ties keep first-seen order, so fusing one ranking returns it unchanged.
    """
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def minmax(scores: Sequence[float]) -> list[float]:
    """Scale a candidate list's scores to [0, 1] (best 1, worst 0); a list of equal scores is all 1."""
    lo, hi = min(scores, default=0.0), max(scores, default=0.0)
    return [1.0 if hi == lo else (s - lo) / (hi - lo) for s in scores]


def convex(lists: Sequence[Sequence[tuple[str, float]]], weights: Sequence[float]) -> list[tuple[str, float]]:
    """Convex combination: score(d) = sum_i w_i * minmax_i(d), a document absent from list i getting 0
    there (the list's floor). Best first; ties keep first-seen order.

    Unlike RRF this keeps *how much* better one candidate is than the next, which is what lets a
    confident BM25 match and a confident dense match both surface (Bruch et al., 2023).
    """
    scores: dict[str, float] = {}
    for lst, w in zip(lists, weights):
        for (doc, _), z in zip(lst, minmax([s for _, s in lst])):
            scores[doc] = scores.get(doc, 0.0) + w * z
        for doc, _ in lst:
            scores.setdefault(doc, 0.0)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def mmr(query: np.ndarray, cands: np.ndarray, k: int, lam: float = 0.5) -> list[int]:
    """Maximal marginal relevance: pick argmax lam * sim(q, d) - (1 - lam) * max sim(d, picked).

    ``query`` (D,), ``cands`` (N, D) unit vectors -> indices into cands, in pick order.
    """
    if len(cands) == 0:
        return []
    rel = cands @ query  # (N,)
    sim = cands @ cands.T  # (N, N)
    picked = [int(np.argmax(rel))]
    while len(picked) < min(k, len(cands)):
        redundancy = sim[:, picked].max(axis=1)  # (N,) closeness to anything already picked
        score = lam * rel - (1 - lam) * redundancy
        score[picked] = -np.inf
        picked.append(int(np.argmax(score)))
    return picked


def fuse(rankings: Sequence[list[Hit]], labels: Sequence[str], k: int = 60, method: str = "rrf",
         alpha: float = 0.5) -> list[Hit]:
    """Fuse hit lists (RRF, or a convex combination where lists labelled bm25* weigh ``alpha`` and the
    others ``1 - alpha``, split evenly over the queries); each fused hit records its rank in every list."""
    by_id = {h.id: h for r in reversed(rankings) for h in r}
    ranks = [{h.id: i + 1 for i, h in enumerate(r)} for r in rankings]
    if method == "cc":
        lexical = [lab.startswith("bm25") for lab in labels]
        n_lex = max(1, sum(lexical))
        n_dense = max(1, len(labels) - sum(lexical))
        weights = [alpha / n_lex if lex else (1 - alpha) / n_dense for lex in lexical]
        fused = convex([[(h.id, h.score) for h in r] for r in rankings], weights)
    else:
        fused = rrf([[h.id for h in r] for r in rankings], k)
    return [replace(by_id[doc], score=score, sources={lab: rk[doc] for lab, rk in zip(labels, ranks) if doc in rk})
            for doc, score in fused]


HYDE_PROMPT = "Write a short factual passage that answers the question.\nQuestion: {q}\nPassage:"
MULTI_PROMPT = ("Rewrite the search query in {n} different ways, one per line, no numbering, "
                "keeping its meaning.\nQuery: {q}")
RERANK_PROMPT = "Passage:\n{p}\n\nWrite a question that this passage answers."


def multi_queries(llm, query: str, n: int) -> list[str]:
    """The original query plus up to n distinct LLM rewrites."""
    out = llm.complete([{"role": "user", "content": MULTI_PROMPT.format(n=n, q=query)}], max_tokens=24 * n)
    lines = [ln.strip(" -*\t0123456789.)").strip() for ln in out.splitlines()]
    rewrites = [ln for ln in dict.fromkeys(lines) if ln and ln.lower() != query.lower()]
    return [query] + rewrites[:n]


class Retriever:
    def __init__(self, store: VectorStore, collection: str, embedder, llm=None):
        self.store, self.collection, self.embedder, self.llm = store, collection, embedder, llm
        store.collection(collection)  # fail early on a missing collection

    def _need_llm(self, what: str):
        if self.llm is None:
            raise ConfigError(f"{what} needs a generator model", "pass llm=load_llm() (SmolLM2 by default)")
        return self.llm

    def query_vector(self, query: str, cfg: RetrievalConfig) -> np.ndarray:
        q = self.embedder.embed_query(query)
        if cfg.transform == "hyde":
            # HyDE: a made-up answer sits closer to real answers than the question does;
            # averaging with the question keeps it anchored when the guess is wrong
            hypo = self._need_llm("HyDE").complete([{"role": "user", "content": HYDE_PROMPT.format(q=query)}],
                                                   max_tokens=96)
            v = q + self.embedder.embed_query(hypo)
            q = v / max(np.linalg.norm(v), 1e-12)
        return q

    def _one(self, query: str, cfg: RetrievalConfig, n: int) -> list[list[Hit]]:
        """Rankings for one query string: [dense], [bm25] or both."""
        out = []
        if cfg.mode in ("dense", "hybrid"):
            out.append(self.store.search(self.collection, self.query_vector(query, cfg), n, cfg.where, cfg.exact))
        if cfg.mode in ("bm25", "hybrid"):
            out.append(self.store.search_bm25(self.collection, query, n, cfg.where))
        return out

    def retrieve(self, query: str, cfg: RetrievalConfig = RetrievalConfig()) -> list[Hit]:
        n = cfg.candidates if (cfg.mmr or cfg.rerank or cfg.mode == "hybrid" or cfg.transform) else cfg.k
        queries = multi_queries(self._need_llm("multi-query"), query, cfg.n_queries) if cfg.transform == "multi" \
            else [query]
        kinds = ("dense", "bm25") if cfg.mode == "hybrid" else (cfg.mode,)
        labels = [kind if len(queries) == 1 else f"{kind}:q{qi}" for qi in range(len(queries)) for kind in kinds]
        rankings = [r for q in queries for r in self._one(q, cfg, n)]
        if len(rankings) == 1:
            hits = rankings[0]
        else:
            method = cfg.fusion if cfg.mode == "hybrid" else "rrf"  # one retriever over rewrites: ranks
            hits = fuse(rankings, labels, cfg.rrf_k, method, cfg.alpha)[:n]
        if cfg.rerank:
            hits = self.rerank(query, hits)
        if cfg.mmr and hits:
            vecs = self.store.get_vectors(self.collection, [h.id for h in hits])
            hits = [hits[i] for i in mmr(self.embedder.embed_query(query), vecs, cfg.k, cfg.mmr_lambda)]
        return hits[:cfg.k]

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        """Order by mean log P(query | passage) under the LLM (query likelihood, as in UPR)."""
        llm = self._need_llm("re-ranking")
        scored = [(llm.loglik([{"role": "user", "content": RERANK_PROMPT.format(p=h.text)}], query), h) for h in hits]
        scored.sort(key=lambda x: -x[0])
        return [replace(h, score=s, sources=dict(h.sources, rerank=i + 1)) for i, (s, h) in enumerate(scored)]

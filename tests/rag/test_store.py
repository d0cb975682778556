"""Both stores (SQLite, PostgreSQL + pgvector): CRUD, filters (SQL vs the Python oracle), dense vs exact, BM25,
index staleness."""

import json
import random

import numpy as np
import pytest

from llmkit.rag.filters import FilterError, matches, parse, to_sql
from llmkit.rag.splitters import Chunk
from llmkit.rag.sqlite_store import SQLiteStore, fts_query
from llmkit.rag.store import CollectionNotFoundError, DimensionMismatchError

from .conftest import fresh_pg_store

DIM = 16


def unit(rng, n, dim=DIM):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def chunks(n, source="a.txt", offset=0):
    kinds = ["pdf", "markdown", "html"]
    return [Chunk(f"{source}-{i + offset}", f"text number {i + offset} about {kinds[i % 3]} topic{i % 7}",
                  {"source": source, "kind": kinds[i % 3], "year": 2000 + i % 25, "n": i + offset, "odd": bool(i % 2)})
            for i in range(n)]


def open_backend(kind, tmp_path, request):
    if kind == "sqlite":
        return SQLiteStore(tmp_path / "s.sqlite")
    return fresh_pg_store(request.getfixturevalue("pg_dsn"))


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    s = open_backend(request.param, tmp_path, request)
    s.create_collection("c", DIM, "fake")
    yield s
    s.close()


FILTERS = [
    {"kind": "pdf"},
    {"year": {"$gte": 2010, "$lt": 2015}},
    {"kind": {"$in": ["pdf", "html"]}, "odd": True},
    {"$or": [{"kind": "markdown"}, {"year": {"$gt": 2020}}]},
    {"$not": {"kind": {"$nin": ["pdf"]}}},
    {"$and": [{"n": {"$ne": 3}}, {"n": {"$lte": 10}}]},
    {"missing": {"$ne": 1}},
    {"kind": {"$gt": 5}},  # string vs number: false everywhere, in both evaluators
]


@pytest.mark.parametrize("f", FILTERS)
def test_filter_sql_agrees_with_oracle(store, f):
    cs = chunks(60)
    store.upsert("c", cs, unit(np.random.default_rng(0), 60))
    want = sorted(c.id for c in cs if matches(f, c.metadata))
    got = sorted(h.id for h in store.get("c", [c.id for c in cs]) if matches(f, h.metadata))
    assert got == want and store.count("c", f) == len(want)


@pytest.mark.parametrize("bad,needle", [("{not json", "not JSON"), ('{"$xor": []}', "$xor"),
                                        ('{"a": {"$in": 3}}', "$in"), ('{"a": {"$like": "x"}}', "$like"),
                                        ('{"a b": 1}', "key"), ('[1]', "object"), ('{"a": null}', "value")])
def test_bad_filters(bad, needle):
    with pytest.raises(FilterError, match=needle.replace("$", r"\$")):
        parse(bad)


def test_to_sql_params_are_bound():
    sql, params = to_sql({"kind": "x'); DROP TABLE chunks; --"}, lambda k: f"m_{k}")
    assert "DROP" not in sql and params[0].startswith("x'")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_dense_matches_exact_and_filtered_returns_k(kind, tmp_path, request):
    rng = np.random.default_rng(1)
    s = open_backend(kind, tmp_path, request)
    s.create_collection("c", DIM, "fake")
    n = 5000  # above EXACT_BELOW: the HNSW path runs
    s.upsert("c", chunks(n), unit(rng, n))
    recall = []
    for q in unit(rng, 20):
        ann = {h.id for h in s.search("c", q, 10)}
        exact = {h.id for h in s.search("c", q, 10, exact=True)}
        recall.append(len(ann & exact) / 10)
    assert np.mean(recall) >= 0.95
    q = unit(rng, 1)[0]
    for f, expect in [({"n": {"$lt": 7}}, 7), ({"kind": "pdf"}, 10), ({"n": {"$gte": 4990}}, 10)]:
        hits = s.search("c", q, 10, where=f)
        assert len(hits) == expect and all(matches(f, h.metadata) for h in hits)
        exact = s.search("c", q, 10, where=f, exact=True)
        assert [h.id for h in hits][:3] == [h.id for h in exact][:3]
    s.close()


def test_index_persisted_and_rebuilt_when_stale(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "p.sqlite"
    s = SQLiteStore(path)
    s.create_collection("c", DIM, "fake")
    s.upsert("c", chunks(3000), unit(rng, 3000))
    q = unit(rng, 1)[0]
    before = [h.id for h in s.search("c", q, 5)]
    s.close()
    index_file = next(tmp_path.glob("p.sqlite.c*.hnsw"))
    assert json.loads(index_file.with_name(index_file.name + ".json").read_text())["generation"] == 1
    s2 = SQLiteStore(path)
    assert [h.id for h in s2.search("c", q, 5)] == before  # loaded, same graph
    # a write by "another process" (raw SQL here) makes the file stale: the next search rebuilds
    s2.db.execute("DELETE FROM chunks WHERE id = ?", (before[0],))
    s2.db.execute("UPDATE collections SET generation = generation + 1")
    s3 = SQLiteStore(path)
    assert before[0] not in [h.id for h in s3.search("c", q, 5)]
    s3.close()
    s2.close()


def test_upsert_replace_delete(store):
    rng = np.random.default_rng(3)
    store.replace_source("c", "a.txt", "h1", 0.0, chunks(5), unit(rng, 5))
    store.replace_source("c", "b.txt", "h2", 0.0, chunks(4, "b.txt"), unit(rng, 4))
    assert store.count("c") == 9 and store.source_hash("c", "a.txt") == "h1"
    store.replace_source("c", "a.txt", "h3", 0.0, chunks(2, offset=100), unit(rng, 2))  # changed file
    assert store.count("c", {"source": "a.txt"}) == 2 and store.sources("c") == {"a.txt": "h3", "b.txt": "h2"}
    store.upsert("c", [Chunk("b.txt-0", "updated text", {"source": "b.txt"})], unit(rng, 1))
    assert store.get("c", ["b.txt-0"])[0].text == "updated text" and store.count("c") == 6
    assert store.delete("c", ids=["b.txt-1"]) == 1 and store.sources("c") == {"a.txt": "h3"}
    assert store.delete("c", where={"source": "a.txt"}) == 2 and store.sources("c") == {}
    assert store.delete("c", source="b.txt") == 3
    assert store.search_bm25("c", "updated") == [] and store.count("c") == 0


def test_bm25_ranks_and_filters(store):  # porter (SQLite) and english (PostgreSQL) both stem cats -> cat
    texts = ["the cat sat on the mat", "dogs chase cats in the park", "stock markets fell today",
             "a cat and a dog", "quantum physics lecture notes"]
    cs = [Chunk(str(i), t, {"source": "s", "i": i}) for i, t in enumerate(texts)]
    store.upsert("c", cs, unit(np.random.default_rng(4), 5))
    hits = store.search_bm25("c", "cat mat")
    assert hits[0].id == "0" and {h.id for h in hits} == {"0", "1", "3"}  # porter stems cats -> cat
    assert [h.id for h in store.search_bm25("c", "cat", where={"i": {"$gt": 0}})] != [] and \
        "0" not in [h.id for h in store.search_bm25("c", "cat", where={"i": {"$gt": 0}})]
    assert store.search_bm25("c", '"; DROP TABLE chunks; NEAR(') == [] and store.count("c") == 5
    assert fts_query("Hello, hello world!") == '"hello" OR "world"'


def test_pg_bm25_is_okapi_bm25(pg_dsn):
    """The SQL scoring equals BM25 written out here over the same lexemes (PostgreSQL's english analyser)."""
    s = fresh_pg_store(pg_dsn)
    s.create_collection("c", DIM, "fake")
    texts = ["the cat sat on the mat with another cat", "dogs chase cats in the park", "stock markets fell",
             "a cat and a dog and a cat and a cat", "quantum physics", "cat"]
    s.upsert("c", [Chunk(str(i), t, {"source": "s"}) for i, t in enumerate(texts)], unit(np.random.default_rng(7), 6))
    docs = [dict(s.db.execute("SELECT lexeme, array_length(positions, 1) FROM unnest(to_tsvector('english', %s))",
                              (t,)).fetchall()) for t in texts]
    avgdl = sum(sum(d.values()) for d in docs) / len(docs)
    q = s._lexemes("cats on a mat")
    want = {}
    for i, d in enumerate(docs):
        score = 0.0
        for w in q:
            df = sum(w in x for x in docs)
            tf = d.get(w, 0)
            if tf:
                idf = np.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
                score += idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * sum(d.values()) / avgdl))
        if score:
            want[str(i)] = score
    got = {h.id: h.score for h in s.search_bm25("c", "cats on a mat", k=10)}
    assert got.keys() == want.keys() and all(abs(got[k] - want[k]) < 1e-9 for k in want)
    assert [h.id for h in s.search_bm25("c", "cats on a mat", k=10)] == sorted(want, key=lambda k: (-want[k], int(k)))
    s.close()


def test_missing_collection_and_dimension_mismatch(store):
    with pytest.raises(CollectionNotFoundError, match="'nope'.*existing: c"):
        store.search("nope", np.zeros(DIM, np.float32))
    with pytest.raises(DimensionMismatchError, match="dimension 8"):
        store.upsert("c", chunks(1), np.ones((1, 8), np.float32))
    with pytest.raises(DimensionMismatchError, match="16-d"):
        store.create_collection("c", 384, "minilm")


def test_list_and_drop(store, tmp_path):
    store.upsert("c", chunks(3), unit(np.random.default_rng(5), 3))
    store.create_collection("d", DIM, "fake")
    assert [(c.name, c.chunks) for c in store.list_collections()] == [("c", 3), ("d", 0)]
    store.drop_collection("c")
    assert [c.name for c in store.list_collections()] == ["d"]
    random.seed(0)


def test_same_id_twice_in_one_write_keeps_the_last(store):
    rng = np.random.default_rng(6)
    a, b = Chunk("x", "first", {"source": "s"}), Chunk("x", "second", {"source": "s"})
    store.upsert("c", [a, b], unit(rng, 2))
    assert store.count("c") == 1 and store.get("c", ["x"])[0].text == "second"
    assert [h.id for h in store.search_bm25("c", "second")] == ["x"] and store.search_bm25("c", "first") == []

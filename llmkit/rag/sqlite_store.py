"""The embedded store: one SQLite file (WAL) + one HNSW index file per collection beside it.

SQLite holds everything (collections, documents with their hash, chunks with metadata JSON and
float32 vectors, a per-collection FTS5 table for BM25) and is the only truth. Every write is a
transaction that also bumps the collection's ``generation``; a SIGKILL at any point leaves the
last committed state. The HNSW file is a cache tagged with the generation it was built at, and
is rebuilt from the stored vectors when missing or stale.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from llmkit.rag.ann import HNSWIndex, exact_topk
from llmkit.rag.filters import parse, to_sql
from llmkit.rag.store import (CollectionInfo, Hit, VectorStore, check_same_collection, check_vectors, dedupe,
                              missing_collection)

MIGRATIONS = [  # applied in order; PRAGMA user_version = how many have run
    """CREATE TABLE collections(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL,
           dim INTEGER NOT NULL, embedder TEXT NOT NULL, generation INTEGER NOT NULL DEFAULT 0, created REAL);
       CREATE TABLE documents(cid INTEGER NOT NULL, source TEXT NOT NULL, hash TEXT NOT NULL, mtime REAL,
           n_chunks INTEGER NOT NULL, PRIMARY KEY(cid, source));
       CREATE TABLE chunks(rowid INTEGER PRIMARY KEY AUTOINCREMENT, cid INTEGER NOT NULL, id TEXT NOT NULL,
           source TEXT NOT NULL, text TEXT NOT NULL, metadata TEXT NOT NULL, vector BLOB NOT NULL,
           UNIQUE(cid, id));
       CREATE INDEX chunks_by_source ON chunks(cid, source);""",
]
EXACT_BELOW = 2000  # collections (or filter matches) this small are searched exactly: fast and perfect recall


def fts_query(text: str) -> str:
    """User text -> an FTS5 query: every word, quoted (no operator injection), OR-ed (BM25 ranks)."""
    words = re.findall(r"\w+", text.lower())
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))




def _meta_column(key: str) -> str:
    return f"json_extract(c.metadata, '$.\"{key}\"')"  # keys are validated to [A-Za-z0-9_.-] by filters


class SQLiteStore(VectorStore):
    def __init__(self, path: str | Path, ef_search: int = 96):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # explicit BEGIN/COMMIT
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process never corrupts
        self._migrate()
        self.ef_search = ef_search
        self._indexes: dict[int, HNSWIndex] = {}
        self._dirty: set[int] = set()
        self._matrices: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}  # cid -> (generation, rowids, vectors)

    # ---- schema and transactions
    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for i, sql in enumerate(MIGRATIONS[version:], start=version):
            self.db.executescript(f"BEGIN; {sql}; PRAGMA user_version = {i + 1}; COMMIT;")

    def _tx(self):
        store = self

        class _Tx:
            def __enter__(self):
                store.db.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlocks
                return store.db

            def __exit__(self, et, ev, tb):
                store.db.execute("COMMIT" if et is None else "ROLLBACK")

        return _Tx()

    # ---- collections
    def _row(self, name: str):
        r = self.db.execute("SELECT id, name, dim, embedder, generation FROM collections WHERE name = ?",
                            (name,)).fetchone()
        if r is None:
            names = [n for (n,) in self.db.execute("SELECT name FROM collections ORDER BY name")]
            raise missing_collection(name, str(self.path), names)
        return r

    def _info(self, r) -> CollectionInfo:
        docs = self.db.execute("SELECT count(*) FROM documents WHERE cid = ?", (r[0],)).fetchone()[0]
        chunks = self.db.execute("SELECT count(*) FROM chunks WHERE cid = ?", (r[0],)).fetchone()[0]
        return CollectionInfo(r[1], r[2], r[3], docs, chunks)

    def create_collection(self, name: str, dim: int, embedder: str) -> CollectionInfo:
        with self._tx() as db:
            r = db.execute("SELECT id, name, dim, embedder, generation FROM collections WHERE name = ?",
                           (name,)).fetchone()
            if r is None:
                cur = db.execute("INSERT INTO collections(name, dim, embedder, created) VALUES (?, ?, ?, ?)",
                                 (name, dim, embedder, time.time()))
                db.execute(f"CREATE VIRTUAL TABLE fts_{cur.lastrowid} USING fts5(text, tokenize='porter unicode61')")
                r = (cur.lastrowid, name, dim, embedder, 0)
        check_same_collection(r, name, dim, embedder)
        return self._info(r)

    def collection(self, name: str) -> CollectionInfo:
        return self._info(self._row(name))

    def list_collections(self) -> list[CollectionInfo]:
        rows = self.db.execute("SELECT id, name, dim, embedder, generation FROM collections ORDER BY name").fetchall()
        return [self._info(r) for r in rows]

    def drop_collection(self, name: str) -> None:
        cid = self._row(name)[0]
        with self._tx() as db:
            db.execute("DELETE FROM chunks WHERE cid = ?", (cid,))
            db.execute("DELETE FROM documents WHERE cid = ?", (cid,))
            db.execute("DELETE FROM collections WHERE id = ?", (cid,))
            db.execute(f"DROP TABLE IF EXISTS fts_{cid}")
        for p in (self._index_path(cid), self._index_path(cid).with_name(self._index_path(cid).name + ".json")):
            p.unlink(missing_ok=True)
        self._indexes.pop(cid, None)
        self._dirty.discard(cid)
        self._matrices.pop(cid, None)

    # ---- writes
    def source_hash(self, collection: str, source: str) -> str | None:
        r = self.db.execute("SELECT hash FROM documents WHERE cid = ? AND source = ?",
                            (self._row(collection)[0], source)).fetchone()
        return r[0] if r else None

    def sources(self, collection: str) -> dict[str, str]:
        cid = self._row(collection)[0]
        return dict(self.db.execute("SELECT source, hash FROM documents WHERE cid = ?", (cid,)).fetchall())

    def _rowids(self, db, cid: int, ids: Sequence[str]) -> dict[str, int]:
        out = {}
        for i in range(0, len(ids), 500):
            part = list(ids[i:i + 500])
            out.update(db.execute(f"SELECT id, rowid FROM chunks WHERE cid = ? AND id IN ({','.join('?' * len(part))})",
                                  [cid, *part]).fetchall())
        return out

    def _insert(self, db, cid: int, chunks: Sequence, vectors: np.ndarray) -> tuple[list[int], list[int]]:
        """Upsert rows in bulk; returns (rowids written in chunk order, rowids that existed before)."""
        old = self._rowids(db, cid, [c.id for c in chunks])
        rows = [(ch.text, json.dumps(ch.metadata, ensure_ascii=False, default=str), vec.tobytes(),
                 ch.metadata.get("source", ""), cid, ch.id) for ch, vec in zip(chunks, vectors)]
        db.executemany("UPDATE chunks SET text = ?, metadata = ?, vector = ?, source = ? WHERE cid = ? AND id = ?",
                       [r for r in rows if r[5] in old])
        db.executemany("INSERT INTO chunks(text, metadata, vector, source, cid, id) VALUES (?,?,?,?,?,?)",
                       [r for r in rows if r[5] not in old])
        rowid = self._rowids(db, cid, [c.id for c in chunks])
        replaced = list(old.values())
        self._delete_fts(db, cid, replaced)
        db.executemany(f"INSERT INTO fts_{cid}(rowid, text) VALUES (?, ?)", [(rowid[c.id], c.text) for c in chunks])
        return [rowid[c.id] for c in chunks], replaced

    def _delete_fts(self, db, cid: int, rowids: list[int]) -> None:
        for i in range(0, len(rowids), 500):
            part = rowids[i:i + 500]
            db.execute(f"DELETE FROM fts_{cid} WHERE rowid IN ({','.join('?' * len(part))})", part)

    def _delete_rows(self, db, cid: int, rowids: list[int]) -> None:
        for i in range(0, len(rowids), 500):
            part = rowids[i:i + 500]
            db.execute(f"DELETE FROM chunks WHERE rowid IN ({','.join('?' * len(part))})", part)
        self._delete_fts(db, cid, rowids)

    def _bump(self, db, cid: int) -> int:
        db.execute("UPDATE collections SET generation = generation + 1 WHERE id = ?", (cid,))
        return db.execute("SELECT generation FROM collections WHERE id = ?", (cid,)).fetchone()[0]

    def _after_write(self, cid: int, gen: int, added: list[int], vectors: np.ndarray, removed: list[int]) -> None:
        """Keep an in-memory index in step, if it was exactly one write behind; else drop it (rebuilt lazily)."""
        self._matrices.pop(cid, None)
        idx = self._indexes.get(cid)
        if idx is None:
            return
        if idx.generation != gen - 1:
            self._indexes.pop(cid)
            return
        idx.remove([r for r in removed if r not in set(added)])
        idx.add(np.asarray(added, dtype=np.int64), vectors)
        idx.generation = gen
        self._dirty.add(cid)

    def replace_source(self, collection, source, file_hash, mtime, chunks, vectors) -> None:
        r = self._row(collection)
        chunks, vectors = dedupe(chunks, check_vectors(CollectionInfo(r[1], r[2], r[3]), vectors, len(chunks)))
        with self._tx() as db:
            old = [x for (x,) in db.execute("SELECT rowid FROM chunks WHERE cid = ? AND source = ?", (r[0], source))]
            self._delete_rows(db, r[0], old)
            added, _ = self._insert(db, r[0], chunks, vectors)
            db.execute("INSERT OR REPLACE INTO documents(cid, source, hash, mtime, n_chunks) VALUES (?,?,?,?,?)",
                       (r[0], source, file_hash, mtime, len(chunks)))
            gen = self._bump(db, r[0])
        self._after_write(r[0], gen, added, vectors, old)

    def upsert(self, collection, chunks, vectors) -> None:
        r = self._row(collection)
        chunks, vectors = dedupe(chunks, check_vectors(CollectionInfo(r[1], r[2], r[3]), vectors, len(chunks)))
        with self._tx() as db:
            added, replaced = self._insert(db, r[0], chunks, vectors)
            gen = self._bump(db, r[0])
        self._after_write(r[0], gen, added, vectors, [])  # hnswlib add_items on a live label replaces its vector

    def delete(self, collection, ids=None, where=None, source=None) -> int:
        cid = self._row(collection)[0]
        sql, params = to_sql(parse(where), _meta_column)
        if ids is not None:
            marks = ",".join("?" * len(ids)) or "NULL"
            sql, params = f"{sql} AND c.id IN ({marks})", params + list(ids)
        if source is not None:
            sql, params = f"{sql} AND c.source = ?", params + [source]
        with self._tx() as db:
            found = db.execute(f"SELECT c.rowid, c.source FROM chunks c WHERE c.cid = ? AND {sql}", [cid] + params)
            rows, touched = [], {source} if source is not None else set()
            for rowid, src in found:
                rows.append(rowid)
                touched.add(src)
            self._delete_rows(db, cid, rows)
            # a source that lost chunks is no longer "ingested as is": forget its hash so re-ingest restores it
            db.executemany("DELETE FROM documents WHERE cid = ? AND source = ?", [(cid, s) for s in touched])
            gen = self._bump(db, cid)
        self._after_write(cid, gen, [], np.zeros((0, 1), np.float32), rows)
        return len(rows)

    # ---- reads
    def count(self, collection, where=None) -> int:
        cid = self._row(collection)[0]
        sql, params = to_sql(parse(where), _meta_column)
        return self.db.execute(f"SELECT count(*) FROM chunks c WHERE c.cid = ? AND {sql}", [cid] + params).fetchone()[0]

    def _hits(self, rowids: Sequence[int], scores: Sequence[float]) -> list[Hit]:
        if len(rowids) == 0:
            return []
        marks = ",".join("?" * len(rowids))
        rows = {r[0]: r for r in self.db.execute(f"SELECT rowid, id, text, metadata FROM chunks WHERE rowid IN ({marks})",
                                                 [int(x) for x in rowids])}
        return [Hit(rows[i][1], rows[i][2], json.loads(rows[i][3]), float(s))
                for i, s in zip(rowids, scores) if int(i) in rows]

    def get(self, collection, ids) -> list[Hit]:
        cid = self._row(collection)[0]
        marks = ",".join("?" * len(ids)) or "NULL"
        rows = self.db.execute(f"SELECT rowid FROM chunks WHERE cid = ? AND id IN ({marks})", [cid, *ids]).fetchall()
        return self._hits([r[0] for r in rows], [0.0] * len(rows))

    def get_vectors(self, collection, ids) -> np.ndarray:
        r = self._row(collection)
        marks = ",".join("?" * len(ids)) or "NULL"
        rows = dict(self.db.execute(f"SELECT id, vector FROM chunks WHERE cid = ? AND id IN ({marks})", [r[0], *ids]))
        out = np.zeros((len(ids), r[2]), dtype=np.float32)
        for i, cid in enumerate(ids):
            out[i] = np.frombuffer(rows[cid], dtype=np.float32)
        return out

    def _matrix(self, cid: int, gen: int) -> tuple[np.ndarray, np.ndarray]:
        """All (rowids, vectors) of a collection, cached per generation; rowids ascending."""
        cached = self._matrices.get(cid)
        if cached and cached[0] == gen:
            return cached[1], cached[2]
        rows = self.db.execute("SELECT rowid, vector FROM chunks WHERE cid = ? ORDER BY rowid", (cid,)).fetchall()
        dim = self.db.execute("SELECT dim FROM collections WHERE id = ?", (cid,)).fetchone()[0]
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        self._matrices[cid] = (gen, ids, mat)
        return ids, mat

    def _index_path(self, cid: int) -> Path:
        return self.path.with_name(f"{self.path.name}.c{cid}.hnsw")

    def _index(self, cid: int, dim: int, gen: int) -> HNSWIndex:
        idx = self._indexes.get(cid)
        if idx is not None and idx.generation == gen:
            return idx
        idx = HNSWIndex(dim, ef_search=self.ef_search)
        if not idx.load(self._index_path(cid), gen):  # missing or stale: rebuild from the truth
            ids, mat = self._matrix(cid, gen)
            idx.build(ids, mat, gen)
            self._dirty.add(cid)
        self._indexes[cid] = idx
        return idx

    def search(self, collection, vector, k=5, where=None, exact=False) -> list[Hit]:
        r = self._row(collection)
        cid, dim, gen = r[0], r[2], r[4]
        q = check_vectors(CollectionInfo(r[1], r[2], r[3]), vector)[0]
        f = parse(where)
        ids, mat = self._matrix(cid, gen)
        allowed = None
        if f is not None:
            sql, params = to_sql(f, _meta_column)
            allowed = np.array([x for (x,) in self.db.execute(
                f"SELECT c.rowid FROM chunks c WHERE c.cid = ? AND {sql}", [cid] + params)], dtype=np.int64)
        n_match = len(ids) if allowed is None else len(allowed)
        want = min(k, n_match)
        if not exact and n_match > EXACT_BELOW:
            allow = None if allowed is None else set(allowed.tolist()).__contains__
            ef = None if allowed is None else max(self.ef_search, 4 * k)  # filtered walks discard neighbours
            labels, scores = self._index(cid, dim, gen).search(q, k, allow, ef)
            if len(labels) >= want:
                return self._hits(labels, scores)
        # exact: the oracle, and the fallback that guarantees k results under a selective filter
        if allowed is not None:
            pos = np.searchsorted(ids, allowed)
            top, scores = exact_topk(mat[pos], q, k)
            return self._hits(allowed[top], scores)
        top, scores = exact_topk(mat, q, k)
        return self._hits(ids[top], scores)

    def search_bm25(self, collection, query, k=5, where=None) -> list[Hit]:
        cid = self._row(collection)[0]
        match = fts_query(query)
        if not match:
            return []
        sql, params = to_sql(parse(where), _meta_column)
        rows = self.db.execute(
            f"SELECT f.rowid, bm25(fts_{cid}) AS s FROM fts_{cid} f JOIN chunks c ON c.rowid = f.rowid "
            f"WHERE fts_{cid} MATCH ? AND {sql} ORDER BY s LIMIT ?", [match] + params + [k]).fetchall()
        return self._hits([r[0] for r in rows], [-r[1] for r in rows])  # FTS5 bm25 is negated: lower = better

    # ---- persistence
    def prepare(self, collection: str) -> None:
        r = self._row(collection)
        if self._info(r).chunks > EXACT_BELOW:
            self._index(r[0], r[2], r[4])

    def flush(self) -> None:
        for cid in list(self._dirty):
            idx = self._indexes.get(cid)
            if idx is not None and idx.index is not None:
                idx.save(self._index_path(cid))
        self._dirty.clear()

    def close(self) -> None:
        self.flush()
        self.db.close()

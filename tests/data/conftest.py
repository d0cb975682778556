"""Shared data-pipeline fixtures: the GPT-2 tokenizer and a small synthetic corpus."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from llmkit.tokenizer import Tokenizer

WORDS = ("the model reads tokens and predicts the next one . def f ( x ) : return x + 1 "
         "naïve café 日本語 emoji 🙂 <|endoftext|> lorem ipsum dolor sit amet").split()




@pytest.fixture(scope="session")
def gpt2(gpt2_path) -> Tokenizer:
    return Tokenizer.from_tiktoken_file(gpt2_path)


def make_docs(n: int, seed: int = 0, words: int = 60) -> list[str]:
    """Deterministic documents of varied length, with non-ASCII text and a literal special-token string."""
    rng = random.Random(seed)
    return [f"doc {i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, words))) + "\n"
            for i in range(n)]


def write_jsonl(path: Path, docs: list[str], field: str = "text") -> Path:
    path.write_text("".join(json.dumps({field: d, "id": i}) + "\n" for i, d in enumerate(docs)), encoding="utf-8")
    return path

"""Verifiable rewards for GRPO: plain callables ``reward(completion: str, example: dict) -> float``.

    exact_answer("936", {"answer": "936"})                      -> 1.0
    format_regex(r"\\d+")("936 apples", {})                      -> 0.0  (the whole reply must match)
    json_schema({"type": "object", "required": ["a"]})('{"a": 1}', {}) -> 1.0

``example`` is the prompt's JSONL record, so per-prompt data (the answer, a
pattern, a schema) travels with the prompt. Any Python callable with this
signature works as a reward.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from llmkit.core.errors import ConfigError

Reward = Callable[[str, dict[str, Any]], float]


def exact_answer(completion: str, example: dict[str, Any]) -> float:
    """1.0 when the reply, stripped, is exactly the example's ``answer``."""
    return float(completion.strip() == str(example["answer"]).strip())


def format_regex(pattern: str) -> Reward:
    """1.0 when the whole stripped reply matches ``pattern`` (or the example's own ``pattern``)."""
    compiled = re.compile(pattern)

    def reward(completion: str, example: dict[str, Any]) -> float:
        pat = re.compile(example["pattern"]) if "pattern" in example else compiled
        return float(pat.fullmatch(completion.strip()) is not None)

    return reward


def json_schema(schema: dict[str, Any] | None = None) -> Reward:
    """1.0 when the reply parses as JSON and validates against ``schema`` (or the example's ``schema``)."""
    try:
        import jsonschema
    except ImportError as e:
        raise ConfigError("the json_schema reward needs jsonschema", "pip install 'llmkit[finetune]'") from e

    def reward(completion: str, example: dict[str, Any]) -> float:
        try:
            value = json.loads(completion.strip())
        except json.JSONDecodeError:
            return 0.0
        try:
            jsonschema.validate(value, example.get("schema", schema) or {})
        except jsonschema.ValidationError:
            return 0.0
        return 1.0

    return reward


REWARDS: dict[str, Callable[[], Reward]] = {
    "exact": lambda: exact_answer,
    "integer": lambda: format_regex(r"-?\d+"),
    "format": lambda: format_regex(r".+"),  # overridden per example by its "pattern"
    "json": lambda: json_schema(),
}


def reward_fns(names: tuple[str, ...] | list[str]) -> list[Reward]:
    unknown = [n for n in names if n not in REWARDS]
    if unknown:
        raise ConfigError(f"unknown reward(s) {unknown}", f"use names from {sorted(REWARDS)}, or pass callables")
    return [REWARDS[n]() for n in names]

"""Errors of the data pipeline.

``DataError`` covers everything a user can get wrong about a corpus or a
prepared data directory: an empty corpus, a file that is not UTF-8, a JSONL
line without the chosen field, a data directory that is incomplete or was
prepared for another tokenizer, a missing optional dependency (pyarrow).
It is an ``LLMKitError``, so the CLI prints it on one line and exits 1.
"""

from __future__ import annotations

from llmkit.core.errors import LLMKitError


class DataError(LLMKitError):
    """A corpus or a prepared data directory that cannot be used as given."""

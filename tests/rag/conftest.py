"""Shared RAG fixtures: the packaged MiniLM embedder, loaded once per session."""

import pytest


@pytest.fixture(scope="session")
def embedder():
    from llmkit.generate.embed import load_embedder

    return load_embedder()  # the packaged asset: missing is a failure (make test installs it)

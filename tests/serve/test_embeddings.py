"""/v1/embeddings: the official openai client (base64 by default), LangChain, parity, every input shape, errors."""

import httpx
import numpy as np
import openai
import pytest

from llmkit.core.assets import asset_path
from llmkit.serve.app import create_app
from llmkit.serve.state import ServeConfig

from .conftest import API_KEY, LiveServer

TEXTS = ["The cat sat on the mat.", "A feline rested on a rug.", "Quarterly revenue rose 4% on strong demand.",
         "def add(a, b):\n    return a + b", "Ünïcödé and emoji 🚀 survive tokenization.", "x " * 400]


@pytest.fixture(scope="module")
def oai(live_keyed):
    return openai.OpenAI(base_url=live_keyed.url + "/v1", api_key=API_KEY, max_retries=0)


@pytest.fixture(scope="module")
def reference():
    import sentence_transformers  # test extra: missing must fail, not skip

    model = sentence_transformers.SentenceTransformer(str(asset_path("minilm").parent), device="cpu")
    return model.encode(TEXTS, normalize_embeddings=True)


def test_openai_client_matches_sentence_transformers(oai, reference):
    out = oai.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS)  # the client asks for base64
    got = np.array([d.embedding for d in out.data])
    assert got.shape == (len(TEXTS), 384) and [d.index for d in out.data] == list(range(len(TEXTS)))
    cos = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
    assert cos.min() >= 0.9999
    assert out.model == "all-MiniLM-L6-v2" and out.usage.prompt_tokens == out.usage.total_tokens > 256


def test_float_and_base64_agree_and_ids_work(live_keyed):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    url = live_keyed.url + "/v1/embeddings"
    as_float = httpx.post(url, json={"model": "minilm", "input": "hello world"}, headers=headers).json()
    as_b64 = httpx.post(url, json={"model": "minilm", "input": "hello world", "encoding_format": "base64"},
                        headers=headers).json()
    vec = np.frombuffer(__import__("base64").b64decode(as_b64["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(vec, as_float["data"][0]["embedding"], atol=1e-7)
    ids = live_keyed.state.embeddings.embedder().encode_ids(["hello world"])[0]
    by_ids = httpx.post(url, json={"model": "minilm", "input": ids}, headers=headers).json()
    by_id_lists = httpx.post(url, json={"model": "minilm", "input": [ids, ids]}, headers=headers).json()
    assert np.allclose(by_ids["data"][0]["embedding"], as_float["data"][0]["embedding"], atol=1e-6)
    assert len(by_id_lists["data"]) == 2 and by_ids["usage"]["prompt_tokens"] == len(ids)


def test_langchain_embeddings(live_keyed, reference):
    from langchain_openai import OpenAIEmbeddings

    # check_embedding_ctx_length=False: otherwise LangChain sends tiktoken ids, which are not MiniLM's vocabulary
    lc = OpenAIEmbeddings(model="all-MiniLM-L6-v2", base_url=live_keyed.url + "/v1", api_key=API_KEY,
                          check_embedding_ctx_length=False)
    got = np.array(lc.embed_documents(TEXTS[:3]))
    assert np.allclose(got, reference[:3], atol=1e-4)
    assert np.allclose(lc.embed_query(TEXTS[0]), reference[0], atol=1e-4)


def test_models_lists_the_embedder_second(oai):
    ids = [m.id for m in oai.models.list().data]
    assert ids == ["smollm2", "all-MiniLM-L6-v2"]


@pytest.mark.parametrize("body, status, needle", [
    ({"model": "minilm", "input": []}, 400, "empty list"),
    ({"model": "minilm", "input": ["ok", ""]}, 400, "empty string"),
    ({"model": "minilm", "input": [[101, 10**6, 102]]}, 400, "outside the embedder's vocabulary"),
    ({"model": "minilm", "input": "hi", "dimensions": 128}, 400, "dimensions=128"),
    ({"model": "minilm", "input": "hi", "encoding_format": "int8"}, 400, "encoding_format"),
    ({"model": "minilm", "input": [1.5]}, 400, "input"),
    ({"model": "text-embedding-3-small", "input": "hi"}, 404, "not an embedding model served here"),
    ({"model": "minilm", "input": ["a"] * 2049}, 400, "at most 2048"),
])
def test_bad_input_is_openai_error(live_keyed, body, status, needle):
    r = httpx.post(live_keyed.url + "/v1/embeddings", json=body, headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]


def test_server_without_embedder_says_how_to_enable(smollm2):
    with LiveServer(create_app(smollm2, ServeConfig(embedder=None))) as srv:
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": "minilm", "input": "hi"})
        assert r.status_code == 404 and "--embedder minilm" in r.json()["error"]["message"]
        assert [m["id"] for m in httpx.get(srv.url + "/v1/models").json()["data"]] == [smollm2.name]

"""POST /v1/embeddings: the packaged all-MiniLM-L6-v2 (or any sentence-transformers BERT directory).

The embedder loads on the first request, so a server that never embeds pays nothing for it.
Inputs follow OpenAI: a string, a list of strings, token ids or lists of token ids (ids are the
embedder's own WordPiece ids, as vLLM does: an embedding model has its own vocabulary).
`encoding_format: "base64"` is what the official openai client asks for by default: float32
little-endian bytes, base64-encoded. Texts longer than the encoder's window are truncated to it
(as sentence-transformers does); `usage` counts the tokens that were actually embedded.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from typing import List, Literal, Optional, Union

import numpy as np
from fastapi import APIRouter, Request
from pydantic import Field, StrictInt, StrictStr

from llmkit.core.errors import LLMKitError
from llmkit.serve.schema import ERROR_RESPONSES, TokenId, _Body
from llmkit.serve.state import ModelNotServedError

router = APIRouter(responses=ERROR_RESPONSES)
MAX_INPUTS = 2048  # OpenAI's limit per request


class EmbeddingsUnavailable(LLMKitError):
    status = 404
    code = "embeddings_not_configured"


class EmbeddingInputError(LLMKitError):
    status = 400
    code = "invalid_input"


class EmbeddingRequest(_Body):
    model: StrictStr
    input: Union[StrictStr, List[StrictStr], List[TokenId], List[List[TokenId]]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[StrictInt] = Field(default=None, ge=1)
    user: Optional[StrictStr] = None


class EmbeddingService:
    """A lazily loaded embedder, one forward at a time (the weights are shared; torch uses all cores)."""

    ALIASES = ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")

    def __init__(self, spec: str = "minilm", served_name: str | None = None):
        self.spec = spec
        self.model_id = served_name or ("all-MiniLM-L6-v2" if spec == "minilm" else spec)
        self.aliases = {self.model_id, spec} | (set(self.ALIASES) if spec == "minilm" else set())
        self._embedder = None
        self._lock = threading.Lock()

    def embedder(self):
        with self._lock:
            if self._embedder is None:
                from llmkit.generate.embed import cached_embedder

                self._embedder = cached_embedder(self.spec)
            return self._embedder

    def embed(self, body: EmbeddingRequest) -> dict:
        emb = self.embedder()
        ids = _input_ids(emb, body.input)
        if body.dimensions is not None and body.dimensions != emb.dim:
            raise EmbeddingInputError(f"dimensions={body.dimensions} is not supported by {self.model_id!r}",
                                      f"omit it or send {emb.dim} (this model has no shortened embeddings)")
        with self._lock:  # one forward at a time: concurrent ones would only fight over the cores
            vectors = emb.embed_ids(ids)
        data = [{"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
                for i, v in enumerate(vectors)]
        used = sum(len(x) for x in ids)
        return {"object": "list", "data": data, "model": self.model_id,
                "usage": {"prompt_tokens": used, "total_tokens": used}}


def _input_ids(emb, value) -> list[list[int]]:
    """Every OpenAI input shape -> WordPiece id lists within the encoder's window (text gets [CLS] ... [SEP]; ids go as sent)."""
    if isinstance(value, str):
        value = [value]
    if not value:
        raise EmbeddingInputError("input is an empty list", "send a string or a non-empty list of strings")
    if len(value) > MAX_INPUTS:
        raise EmbeddingInputError(f"input has {len(value)} items", f"send at most {MAX_INPUTS} per request")
    if isinstance(value[0], int):
        value = [value]
    if isinstance(value[0], str):
        if any(not s for s in value):
            raise EmbeddingInputError("input contains an empty string", "remove empty strings from input")
        return emb.encode_ids(value)
    vocab = emb.tokenizer.get_vocab_size()
    out = []
    for row in value:
        if not row:
            raise EmbeddingInputError("input contains an empty token list", "remove empty lists from input")
        bad = next((t for t in row if t >= vocab), None)
        if bad is not None:
            raise EmbeddingInputError(f"token id {bad} is outside the embedder's vocabulary of {vocab}",
                                      "send ids from this embedder's tokenizer, or send text")
        out.append(list(row[: emb.max_length]))
    return out


def _encode(vector: np.ndarray, fmt: str):
    if fmt == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request):
    state = request.app.state.llmkit
    service: EmbeddingService | None = state.embeddings
    if service is None:
        raise EmbeddingsUnavailable("this server was started without an embedding model",
                                    "restart it with --embedder minilm (the default)")
    if body.model not in service.aliases:
        raise ModelNotServedError(f"model {body.model!r} is not an embedding model served here",
                                  f"use {service.model_id!r} (GET /v1/models lists it)")
    if state.scheduler.alive:  # on the model's thread, between decode steps: one OpenMP team for all the math
        return await asyncio.wrap_future(state.scheduler.call(lambda: service.embed(body)))
    return await asyncio.to_thread(service.embed, body)

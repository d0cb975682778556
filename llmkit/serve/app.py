"""The FastAPI app: routers, OpenAI-shaped errors, API key, body limit, CORS, request metrics.

    app = create_app(load_model("smollm2"), ServeConfig(api_key="sk-local"))
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import hmac
import json
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from llmkit.formats.loader import LoadedModel
from llmkit.serve import chat, completions, embeddings, errors, routes
from llmkit.serve.state import ChatHooks, ServeConfig, ServerState

OPEN_PATHS = {"/", "/health", "/favicon.ico"}  # reachable without the API key (the page asks for it)


async def _send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())] + (headers or [])
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": data})


class GuardMiddleware:
    """Pure ASGI (works for streaming): API key check, body size limit, per-endpoint metrics."""

    def __init__(self, app, state: ServerState):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        cfg, path = self.state.config, scope["path"]
        headers = dict(scope.get("headers") or [])
        if cfg.api_key and path not in OPEN_PATHS and scope["method"] != "OPTIONS":
            auth = headers.get(b"authorization", b"").decode("latin-1")
            token = auth[7:] if auth.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode(), cfg.api_key.encode()):
                msg = "Incorrect API key provided." if token else "Missing API key: send 'Authorization: Bearer KEY'."
                await _send_json(send, 401, errors.openai_error(401, msg, "invalid_api_key"),
                                 [(b"www-authenticate", b"Bearer")])
                return self._count(path, 401)
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > cfg.max_body_bytes:
            return await self._too_large(send, path)
        received = 0

        async def limited_receive():
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > cfg.max_body_bytes:
                    raise _BodyTooLarge()
            return msg

        status = 500
        t0 = time.perf_counter()

        async def tracking_send(msg):
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            return await self._too_large(send, path)
        finally:
            self.state.metrics.observe("llmkit_request_latency_seconds", time.perf_counter() - t0,
                                       endpoint=_endpoint(path))
        self._count(path, status)

    async def _too_large(self, send, path):
        msg = f"request body exceeds {self.state.config.max_body_bytes} bytes"
        await _send_json(send, 413, errors.openai_error(413, msg, "body_too_large"))
        self._count(path, 413)

    def _count(self, path, status):
        self.state.metrics.inc("llmkit_requests_total", endpoint=_endpoint(path), status=str(status))


class _BodyTooLarge(Exception):
    pass


def _endpoint(path: str) -> str:
    known = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/v1/embeddings", "/tokenize",
             "/detokenize", "/tokenizer_info", "/health", "/metrics", "/")
    return path if path in known else "other"  # bounded label values


def create_app(lm: LoadedModel, config: ServeConfig | None = None, spec: str | None = None,
               hooks: ChatHooks | None = None, draft: LoadedModel | None = None) -> FastAPI:
    """The app (``draft``: a same-tokenizer model that guesses tokens for speculative decoding)."""
    config = config or ServeConfig()
    state = ServerState(lm, config, spec, hooks, draft)
    if config.embedder:
        state.embeddings = embeddings.EmbeddingService(config.embedder)

    @asynccontextmanager
    async def lifespan(app):
        state.scheduler.start()
        yield
        state.scheduler.stop()

    app = FastAPI(title="llmkit", version="1", lifespan=lifespan,
                  description="OpenAI-compatible API over an llmkit model.")
    app.state.llmkit = state
    errors.install(app, config.retry_after_s)
    for r in (completions.router, chat.router, embeddings.router, routes.router):
        app.include_router(r)
    app.add_middleware(GuardMiddleware, state=state)
    if config.cors_origins:  # outermost, so preflight answers come before the key check
        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    return app

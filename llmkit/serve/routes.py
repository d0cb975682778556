"""The small endpoints: models, tokenizer (lm-eval RemoteTokenizer shapes), health, metrics, the chat page."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from llmkit.serve.chat import chat_messages
from llmkit.serve.schema import ERROR_RESPONSES, DetokenizeRequest, TokenizeRequest
from llmkit.serve.state import ServerState

router = APIRouter(responses=ERROR_RESPONSES)


def _state(request: Request) -> ServerState:
    return request.app.state.llmkit


@router.get("/v1/models")
async def models(request: Request):
    s = _state(request)
    data = [{"id": s.model_id, "object": "model", "created": 0, "owned_by": "llmkit", "max_model_len": s.context}]
    if s.embeddings is not None:  # listed second: clients that take data[0] get the chat model
        data.append({"id": s.embeddings.model_id, "object": "model", "created": 0, "owned_by": "llmkit"})
    return {"object": "list", "data": data}


@router.get("/v1/models/{model_id:path}")
async def model(model_id: str, request: Request):
    s = _state(request)
    s.check_model(model_id)
    return {"id": s.model_id, "object": "model", "created": 0, "owned_by": "llmkit", "max_model_len": s.context}


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, request: Request):
    s = _state(request)
    if body.model is not None:
        s.check_model(body.model)
    if body.messages is not None:
        text = s.template.render_text(chat_messages(body.messages, None, False),
                                      add_generation_prompt=body.add_generation_prompt)
        tokens = s.tokenizer.encode(text, allowed_special="all")
    else:
        tokens = s.tokenizer.encode(body.prompt or "", allowed_special="all")
        if body.add_special_tokens and s.tokenizer.bos_id is not None:
            tokens = [s.tokenizer.bos_id] + tokens
    return {"tokens": tokens, "count": len(tokens), "max_model_len": s.context}


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, request: Request):
    s = _state(request)
    if body.model is not None:
        s.check_model(body.model)
    return {"prompt": s.tokenizer.decode(body.tokens)}


@router.get("/tokenizer_info")
async def tokenizer_info(request: Request):
    s = _state(request)
    tok = s.tokenizer

    def name(i):
        return tok.id_to_token(i) if i is not None else None

    return {"tokenizer_class": "llmkit.Tokenizer", "model": s.model_id, "vocab_size": tok.vocab_size,
            "max_model_len": s.context, "eos_token": name(tok.eos_id), "bos_token": name(tok.bos_id),
            "pad_token": name(tok.pad_id), "chat_template": s.template.source,
            "special_tokens": tok.special_tokens}


@router.get("/health")
async def health(request: Request):
    s = _state(request)
    alive = s.scheduler.alive
    body = {"status": "ok" if alive else "down", "model": s.model_id, "running": s.scheduler.running,
            "waiting": s.scheduler.waiting}
    return JSONResponse(body, status_code=200 if alive else 503)


@router.get("/metrics", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain; version=0.0.4": {}}, "description": "Prometheus text"}})
async def metrics(request: Request):
    return PlainTextResponse(_state(request).metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/", response_class=HTMLResponse)
async def index():
    return HTMLResponse(resources.files("llmkit.serve").joinpath("static/index.html").read_text("utf-8"))

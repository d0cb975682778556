"""OpenAI-shaped errors: every bad input is a 4xx with {"error": {message, type, param, code}}."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import Request

from llmkit.core.errors import LLMKitError

log = logging.getLogger("llmkit.serve")

TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
         413: "invalid_request_error", 429: "rate_limit_error"}


def openai_error(status: int, message: str, code: str | None = None, param: str | None = None) -> dict:
    kind = TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_body(exc: BaseException) -> tuple[int, dict]:
    if isinstance(exc, LLMKitError):
        status = getattr(exc, "status", 400)
        return status, openai_error(status, str(exc), getattr(exc, "code", None))
    log.exception("internal error", exc_info=exc)
    return 500, openai_error(500, f"internal error: {type(exc).__name__}")


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errs = exc.errors()
    if not errs:
        return "invalid request body", None
    e = errs[0]
    if e.get("type") == "json_invalid":
        return f"malformed JSON body: {e.get('ctx', {}).get('error', e.get('msg'))}", None
    loc = [str(x) for x in e.get("loc", ()) if x != "body"]
    param = ".".join(loc) or None
    return f"invalid value for {param or 'the body'}: {e.get('msg')}", param


def install(app: FastAPI, retry_after: int) -> None:
    @app.exception_handler(LLMKitError)
    async def _llmkit(request: Request, exc: LLMKitError):
        status, body = error_body(exc)
        headers = {"Retry-After": str(retry_after)} if status == 429 else None
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        return JSONResponse(openai_error(400, message, param=param), status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        return JSONResponse(openai_error(exc.status_code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))  # e.g. Allow on a 405

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        status, body = error_body(exc)
        return JSONResponse(body, status_code=status)

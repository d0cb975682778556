"""What one running server holds: the model, its scheduler, its settings and its metrics."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from llmkit.core.errors import ConfigError, LLMKitError
from llmkit.formats.loader import LoadedModel
from llmkit.generate.api import chat_template_for
from llmkit.generate.engine import Engine
from llmkit.generate.scheduler import Scheduler
from llmkit.serve.metrics import Metrics

API_KEY_ENV = "LLMKIT_API_KEY"


class ModelNotServedError(LLMKitError):
    status = 404
    code = "model_not_found"


class AuthError(LLMKitError):
    status = 401
    code = "invalid_api_key"


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"  # loopback by default: exposing a server is an explicit choice
    port: int = 8000
    api_key: str | None = None  # None: read LLMKIT_API_KEY; "" or unset: no auth
    max_batch: int = 16  # rows decoded together
    max_queue: int = 64  # requests waiting for a slot before 429
    max_n: int = 8  # most choices per request
    max_body_bytes: int = 1 << 20
    cors_origins: list[str] = field(default_factory=list)
    served_name: str | None = None  # the model id clients send; defaults to the model's name
    chat_template: str | None = None  # override: chatml, llama3, alpaca
    retry_after_s: int = 1
    embedder: str | None = "minilm"  # /v1/embeddings model (loaded on first use); None: no embeddings endpoint
    speculative: int = 4  # tokens guessed per step while one request runs alone (prompt lookup or draft); 0: off

    def __post_init__(self) -> None:
        if self.api_key is None:
            self.api_key = os.environ.get(API_KEY_ENV) or None
        for name in ("max_batch", "max_n", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}", f"{name} must be >= 1")
        for name in ("max_queue", "speculative"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)}", f"{name} must be >= 0")


@dataclass
class ChatHooks:
    """Optional callables a higher layer (llmkit.guard) plugs into /v1/chat/completions; None = unchanged.

    system_prompt:  the client's system prompt (or None) -> the one the model sees
    wrap_untrusted: (text, source) -> text, for tool messages and content parts sent with "untrusted": true
    check_input:    a user message's text -> the text used (may raise an LLMKitError: a 4xx reply)
    check_output:   (reply, client's system prompt) -> the reply sent; streamed replies are then held
                    back and sent as one chunk once checked
    """

    system_prompt: Callable[[str | None], str] | None = None
    wrap_untrusted: Callable[[str, str], str] | None = None
    check_input: Callable[[str], str] | None = None
    check_output: Callable[[str, str | None], str] | None = None


class ServerState:
    def __init__(self, lm: LoadedModel, config: ServeConfig, spec: str | None = None,
                 hooks: ChatHooks | None = None, draft: LoadedModel | None = None):
        self.lm = lm
        self.config = config
        self.hooks = hooks or ChatHooks()
        self.tokenizer = lm.tokenizer
        self.template = chat_template_for(lm, config.chat_template)
        self.engine = Engine(lm.model, lm.tokenizer)
        self.scheduler = Scheduler(self.engine, config.max_batch, config.max_queue,
                                   speculative=config.speculative, draft=draft.model if draft else None)
        self.model_id = config.served_name or lm.name
        # clients may name the model by its id, by what was asked on the command line, or by its path
        self.aliases = {self.model_id, lm.name, lm.source, str(lm.path)} | ({spec} if spec else set())
        self.context = lm.model.cfg.max_seq_len
        self.metrics = _metrics(self.scheduler)
        self.embeddings = None  # an EmbeddingService when config.embedder is set (see app.create_app)

    def check_model(self, name: str) -> None:
        if name not in self.aliases:
            raise ModelNotServedError(f"model {name!r} is not served here",
                                      f"use {self.model_id!r} (GET /v1/models lists it)")


def _metrics(sched: Scheduler) -> Metrics:
    m = Metrics()
    m.counter("llmkit_requests_total", "HTTP requests answered, by endpoint and status.")
    m.gauge("llmkit_prompt_tokens_total", "Prompt tokens prefilled.", lambda: sched.stats.prompt_tokens, "counter")
    m.gauge("llmkit_generation_tokens_total", "Tokens generated.", lambda: sched.stats.generated_tokens, "counter")
    m.histogram("llmkit_request_latency_seconds", "Time from request to last byte, by endpoint.")
    m.histogram("llmkit_time_to_first_token_seconds", "Time from submit to the first generated token.")
    m.gauge("llmkit_requests_running", "Requests in the decode batch.", lambda: sched.running)
    m.gauge("llmkit_requests_waiting", "Requests queued for a slot.", lambda: sched.waiting)
    m.gauge("llmkit_requests_cancelled_total", "Requests cancelled (client disconnect).",
            lambda: sched.stats.cancelled, "counter")
    m.gauge("llmkit_requests_rejected_total", "Requests refused with 429.", lambda: sched.stats.rejected, "counter")
    m.gauge("llmkit_decode_steps_total", "Batched decode forwards.", lambda: sched.stats.steps, "counter")
    m.gauge("llmkit_spec_proposed_tokens_total", "Tokens guessed by speculative decoding.",
            lambda: sched.stats.spec_proposed, "counter")
    m.gauge("llmkit_spec_accepted_tokens_total", "Guessed tokens the model agreed with (free tokens).",
            lambda: sched.stats.spec_accepted, "counter")
    return m

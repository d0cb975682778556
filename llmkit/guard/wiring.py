"""A Guard as the optional hooks the lower layers expose: RAG's PromptHooks, the server's ChatHooks,
and a logging filter that redacts PII from log records.

    rag_ask(question, hooks=rag_hooks(Guard()))
    serve("smollm2", hooks=chat_hooks(Guard()))
"""

from __future__ import annotations

import logging

from llmkit.guard.guard import Guard
from llmkit.rag.pipeline import PromptHooks
from llmkit.serve.state import ChatHooks

LOGGERS = ("llmkit", "llmkit.serve", "uvicorn", "uvicorn.error", "uvicorn.access")


def rag_hooks(guard: Guard) -> PromptHooks:
    """Retrieved chunks spotlighted (and withheld if injected), hierarchy system prompt, question and answer checked."""
    return PromptHooks(system_prompt=guard.system_prompt, wrap_source=guard.wrap_untrusted,
                       check_question=guard.check_input, check_output=guard.check_output)


def chat_hooks(guard: Guard) -> ChatHooks:
    """Tool messages and untrusted parts spotlighted, user text checked, replies leak-checked and redacted."""
    return ChatHooks(system_prompt=guard.system_prompt, wrap_untrusted=guard.wrap_untrusted,
                     check_input=guard.check_input, check_output=guard.check_output)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with PII replaced (the args are folded in first)."""

    def __init__(self, guard: Guard):
        super().__init__()
        self.guard = guard

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        clean = self.guard.redact(message, "log")
        if clean != message:
            record.msg, record.args = clean, ()
        return True


def redact_logs(guard: Guard, loggers: tuple[str, ...] = LOGGERS) -> RedactingFilter:
    """Install one RedactingFilter on each named logger (uvicorn keeps logger filters when it configures logging)."""
    filt = RedactingFilter(guard)
    for name in loggers:
        logging.getLogger(name).addFilter(filt)
    return filt

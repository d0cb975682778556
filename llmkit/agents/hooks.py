"""The guard interface the agent loop calls: duck-typed, so llmkit.guard (a sibling layer) plugs in
without this package importing it, and tests pass a small fake.

    system_prompt(base)         -> the system prompt to use (e.g. an instruction hierarchy added)
    wrap_untrusted(text, source)-> tool output as the model will see it (e.g. spotlighting markers)
    check_input(text)           -> the user's task, possibly redacted; raise LLMKitError to refuse it
    check_output(text)          -> the final answer, possibly redacted; raise LLMKitError to withhold it
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Guard(Protocol):
    def system_prompt(self, base: str | None) -> str: ...

    def wrap_untrusted(self, text: str, source: str) -> str: ...

    def check_input(self, text: str) -> str: ...

    def check_output(self, text: str) -> str: ...


class NoGuard:
    """The identity guard: what the loop does when none is given."""

    def system_prompt(self, base: str | None) -> str:
        return base or ""

    def wrap_untrusted(self, text: str, source: str) -> str:
        return text

    def check_input(self, text: str) -> str:
        return text

    def check_output(self, text: str) -> str:
        return text

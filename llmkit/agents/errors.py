"""Errors of the agents layer. A tool failing *inside* a run is not an exception: it becomes an
observation the model reads. These are for the user's own mistakes (a bad tool spec, a bad limit)."""

from __future__ import annotations

from llmkit.core.errors import LLMKitError


class AgentError(LLMKitError):
    """A misconfigured agent: unknown tool names, bad limits, a tool spec that does not parse."""


class ToolDefinitionError(AgentError):
    """A function that cannot become a tool (untyped argument, *args, an unsupported type)."""


class ToolCallError(Exception):
    """Raised inside a tool call; the loop turns it into an error observation (never reaches the user)."""

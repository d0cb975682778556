"""Request fields -> a per-choice token constraint factory (filled in by llmkit.generate.constrain)."""

from __future__ import annotations

from llmkit.core.errors import GenerationError


def constraint_factory(state, body, response_format):
    if body.guided_regex or body.guided_choice or body.guided_json or response_format is not None:
        raise GenerationError("constrained decoding is not available yet", "leave guided_* out")
    return None

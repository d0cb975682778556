"""Request fields -> a factory of per-choice token constraints (llmkit.generate.constrain).

Sources, one at a time: response_format (json_object / json_schema), extra_body
guided_json / guided_regex / guided_choice (vLLM's names), and tool_choice
"required" or a named function, which forces one `<tool_call>{json}</tool_call>`.
"""

from __future__ import annotations

from typing import Callable

from llmkit.core.errors import GenerationError
from llmkit.generate.constrain import compile_choice, compile_json_object, compile_json_schema, compile_regex
from llmkit.generate.tools import call_block_regex, tool_call_schema


def _forced_tool(body) -> dict | None:
    """The call schema when tool_choice forces a call, else None."""
    choice = getattr(body, "tool_choice", None)
    tools = getattr(body, "tools", None)
    if not tools or choice in (None, "none", "auto"):
        return None
    dumped = [t.model_dump(exclude_none=True) for t in tools]
    if choice == "required":
        return tool_call_schema(dumped)
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if not name or name not in [t["function"]["name"] for t in dumped]:
        raise GenerationError(f"tool_choice {choice!r} names no declared tool",
                              'use "auto", "none", "required" or {"type": "function", "function": {"name": ...}}')
    return tool_call_schema(dumped, [name])


def constraint_factory(state, body, response_format=None) -> Callable[[], object] | None:
    tok, eos, vocab = state.tokenizer, state.engine.default_stop_ids, state.lm.model.cfg.vocab_size
    asked = []
    if response_format is not None and response_format.type != "text":
        if response_format.type == "json_object":
            asked.append(lambda: compile_json_object(tok, eos, vocab))
        else:
            fmt = response_format.json_schema
            if fmt is None or fmt.schema_ is None:
                raise GenerationError("response_format json_schema needs json_schema.schema",
                                      'send {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}')
            asked.append(lambda: compile_json_schema(fmt.schema_, tok, eos, vocab))
    if body.guided_json is not None:
        asked.append(lambda: compile_json_schema(body.guided_json, tok, eos, vocab))
    if body.guided_regex is not None:
        asked.append(lambda: compile_regex(body.guided_regex, tok, eos, vocab))
    if body.guided_choice is not None:
        asked.append(lambda: compile_choice(body.guided_choice, tok, eos, vocab))
    forced = _forced_tool(body)
    if forced is not None:
        pattern = call_block_regex(forced)
        asked.append(lambda: compile_regex(pattern, tok, eos, vocab))
    if len(asked) > 1:
        raise GenerationError("more than one output constraint given",
                              "use one of response_format, guided_json, guided_regex, guided_choice, forced tool_choice")
    if not asked:
        return None
    grammar = asked[0]()  # compile now: a bad schema or regex is a 400 before anything runs
    return grammar.start

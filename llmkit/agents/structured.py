"""Structured output: a pydantic model in, a validated instance out, by constrained decoding.

    class City(BaseModel):
        name: str
        country: str
        population_millions: float
    city = structured("smollm2", City, "Describe Paris.")      # -> City(name='Paris', ...)

The model's JSON schema becomes a grammar (llmkit.generate.constrain), so the reply is
always JSON of the right shape: no parse-and-retry loop. What a grammar cannot count
(minimum, multipleOf, ...) is checked by pydantic after decoding; a violation, or a reply
cut by max_tokens, is a typed error naming the field, never a silent retry.
"""

from __future__ import annotations

import json

from llmkit.agents.errors import AgentError
from llmkit.agents.tools import decoding_schema, inline_refs

SYSTEM = "Reply with one JSON object that matches this JSON schema:\n{schema}"


class StructuredOutputError(AgentError):
    """The constrained reply did not validate (a bound the grammar cannot enforce, or max_tokens cut it)."""


def _chat_model(model):
    if hasattr(model, "chat"):
        return model
    from llmkit.agents.llm import EngineChat

    return EngineChat.load(model) if isinstance(model, str) else EngineChat(model)


def output_regex(schema_cls) -> str:
    """The grammar of every JSON text shaped like `schema_cls` (a pydantic model class)."""
    from llmkit.generate.constrain.schema import schema_regex

    return schema_regex(decoding_schema(inline_refs(schema_cls.model_json_schema())))


def structured(model, schema_cls, prompt: str, system: str | None = None, max_tokens: int = 256):
    """A validated `schema_cls` instance answering `prompt`; model: a name, a LoadedModel or a ChatModel."""
    from pydantic import BaseModel, ValidationError

    if not (isinstance(schema_cls, type) and issubclass(schema_cls, BaseModel)):
        raise AgentError(f"structured() needs a pydantic model class, got {schema_cls!r:.60}",
                         "define `class Answer(BaseModel): ...` and pass Answer")
    llm = _chat_model(model)
    shown = json.dumps(inline_refs(schema_cls.model_json_schema()), ensure_ascii=False)
    head = SYSTEM.format(schema=shown)
    messages = [{"role": "system", "content": head if not system else system + "\n\n" + head},
                {"role": "user", "content": prompt}]
    reply = llm.chat(messages, max_tokens=max_tokens, regex=output_regex(schema_cls))
    if reply.finish_reason == "length":
        raise StructuredOutputError(f"the reply was cut at max_tokens={max_tokens} before the JSON was complete",
                                    "raise max_tokens or bound the string fields (max_length)")
    try:
        return schema_cls.model_validate_json(reply.text)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "the object"
        raise StructuredOutputError(f"{schema_cls.__name__}.{where}: {first['msg']} in {reply.text!r:.120}",
                                    "a bound like ge/le is checked after decoding; relax it or reword the prompt")

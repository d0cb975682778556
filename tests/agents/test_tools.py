"""@tool: schemas from signatures and docstrings, validation before the call, every failure an observation."""

import enum
import json
import time
from typing import Literal, Optional

import pytest

from llmkit.agents.errors import AgentError, ToolDefinitionError
from llmkit.agents.llm import flatten_messages
from llmkit.agents.tools import ToolRegistry, decoding_schema, parse_docstring, tool, tool_message
from llmkit.tokenizer import ChatTemplate


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


@tool
def weather(city: str, unit: Unit = Unit.CELSIUS, days: int = 1, detail: Literal["low", "high"] = "low",
            tags: Optional[list[str]] = None) -> dict:
    """Forecast for a city.

    More text that is not the summary.

    Args:
        city: the city name, e.g. Paris.
        unit: temperature unit.
        days (int): how many days,
            counted from today.
    """
    return {"city": city, "unit": unit.value, "days": days, "detail": detail}


def test_schema_from_signature_and_docstring():
    p = weather.parameters
    assert weather.name == "weather" and weather.description == "Forecast for a city."
    assert p["type"] == "object" and p["required"] == ["city"]
    assert p["properties"]["city"] == {"type": "string", "description": "the city name, e.g. Paris."}
    assert p["properties"]["unit"]["enum"] == ["celsius", "fahrenheit"]  # Enum inlined, no $ref left
    assert p["properties"]["unit"]["default"] == "celsius"
    assert p["properties"]["days"] == {"type": "integer", "default": 1,
                                       "description": "how many days, counted from today."}
    assert p["properties"]["detail"]["enum"] == ["low", "high"]
    assert {"type": "null"} in p["properties"]["tags"]["anyOf"]
    assert "$defs" not in json.dumps(p) and '"title"' not in json.dumps(p)
    spec = weather.spec()
    assert spec["type"] == "function" and spec["function"]["parameters"] is p


def test_numpy_and_rest_docstrings():
    assert parse_docstring("Add.\n\nParameters\n----------\na : int\n    First term.\nb : int\n    Second.") == \
        ("Add.", {"a": "First term.", "b": "Second."})
    assert parse_docstring("Add.\n\n:param a: first.\n:param int b: second.\n:returns: sum") == \
        ("Add.", {"a": "first.", "b": "second."})


def test_validation_happens_before_the_call():
    calls = []

    @tool
    def record(n: int, mode: Literal["a", "b"] = "a") -> str:
        calls.append(n)
        return "ok"

    r = record.invoke('{"n": "x", "mode": "c", "extra": 1}')
    assert not r.ok and calls == []
    for needle in ("n: Input should be a valid integer", "mode: Input should be 'a' or 'b'", "extra"):
        assert needle in r.content
    assert not record.invoke("{not json").ok and "not valid JSON" in record.invoke("{not json").content
    assert "n: Field required" in record.invoke({}).content
    assert record.invoke({"n": "7"}).ok and calls == [7]  # lax coercion of "7", as pydantic does
    assert record(3) == "ok"  # the decorated function is still callable


def test_enum_arguments_arrive_as_enum_members():
    r = weather.invoke({"city": "Oslo", "unit": "fahrenheit"})
    assert r.ok and json.loads(r.content)["unit"] == "fahrenheit"
    assert r.arguments["unit"] == "fahrenheit"


def test_raising_and_slow_tools_become_error_results():
    @tool
    def boom(x: int) -> int:
        raise RuntimeError(f"disk on fire {x}")

    @tool(timeout=0.2)
    def slow(x: int) -> int:
        time.sleep(5)
        return x

    r = boom.invoke({"x": 1})
    assert not r.ok and r.content == "error: RuntimeError: disk on fire 1"
    t0 = time.monotonic()
    r = slow.invoke({"x": 1})
    assert not r.ok and "timed out after 0.2 s" in r.content and time.monotonic() - t0 < 3


def test_definition_errors_are_typed():
    with pytest.raises(ToolDefinitionError, match="no type annotation"):
        tool(name="ident")(lambda x: x)
    with pytest.raises(ToolDefinitionError, match=r"\*args"):
        @tool
        def f(*args: int) -> int:
            return 0
    with pytest.raises(ToolDefinitionError, match="not an identifier"):
        tool(name="two words")(weather.fn)


def test_registry_unknown_and_disallowed_tools():
    reg = ToolRegistry.of([weather])
    with pytest.raises(AgentError, match="two tools"):
        reg.add(weather)
    assert "unknown tool 'nope'" in reg.call("nope", {}).content
    r = reg.call("weather", {"city": "Rome"}, allowed=["calculator"])
    assert not r.ok and "not allowed" in r.content
    assert reg.call("weather", {"city": "Rome"}, allowed=["weather"]).ok


def test_decoding_schema_bounds_strings_and_drops_unenforceable_keywords():
    s = decoding_schema({"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer",
                                                                                      "minimum": 1}}})
    assert s["properties"]["q"]["maxLength"] == 200 and s["properties"]["q"]["minLength"] == 1
    assert "minimum" not in s["properties"]["n"]


def test_tool_results_render_as_tool_turns_in_the_chat_template():
    msgs = [{"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "", "tool_calls": [{"name": "weather", "arguments": '{"city": "Rome"}'}]},
            tool_message(weather.invoke({"city": "Rome"}))]
    text = ChatTemplate.builtin("chatml").render_text(flatten_messages(msgs, [weather.spec()], False))
    assert "<|im_start|>system\nYou are a function calling AI model" in text and '"name": "weather"' in text
    assert '<|im_start|>assistant\n<tool_call>\n{"name": "weather", "arguments": {"city": "Rome"}}\n</tool_call>' in text
    assert '<|im_start|>tool\n{"city": "Rome"' in text
    # a template without a tool role gets the result as a user turn in the Hermes wrapper
    flat = flatten_messages(msgs, None, False, tool_role=False)
    assert flat[-1]["role"] == "user" and flat[-1]["content"].startswith("<tool_response>\n")

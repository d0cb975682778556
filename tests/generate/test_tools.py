import json

from llmkit.generate.tools import format_tool_call, parse_tool_calls, tool_call_schema, tools_system_prompt


def test_parse_hermes_tool_calls():
    text = ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
            '<tool_call>{"name": "add", "arguments": "{\\"a\\": 1}"}</tool_call>')
    content, calls = parse_tool_calls(text)
    assert content == "Let me check."
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"}), ("add", {"a": 1})]


def test_broken_blocks_stay_text_and_unclosed_block_parses():
    assert parse_tool_calls("<tool_call>not json</tool_call>") == ("<tool_call>not json</tool_call>", [])
    content, calls = parse_tool_calls('<tool_call>{"name": "f", "arguments": {}}')
    assert content == "" and calls[0].name == "f" and calls[0].arguments == "{}"
    assert parse_tool_calls("plain answer") == ("plain answer", [])


def test_round_trip_and_prompt_and_schema():
    block = format_tool_call("f", '{"x": 2}')
    assert parse_tool_calls(block)[1][0].arguments == '{"x": 2}'
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},
             {"type": "function", "function": {"name": "g"}}]
    assert '"name": "f"' in tools_system_prompt(tools) and "<tool_call>" in tools_system_prompt(tools)
    assert len(tool_call_schema(tools)["anyOf"]) == 2
    assert tool_call_schema(tools, ["g"])["properties"]["name"] == {"const": "g"}

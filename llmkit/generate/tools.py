"""Tool calling in the Hermes / Qwen / SmolLM2 convention: `<tool_call>{json}</tool_call>` blocks.

    >>> content, calls = parse_tool_calls('Sure.<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>')
    >>> content, calls[0].name, calls[0].arguments
    ('Sure.', 'add', '{"a": 1}')

The server turns these into OpenAI `tool_calls`; the agents layer reuses the same
parser and prompt. Templates without tool support get the tool list as a system
message in the same convention (`tools_system_prompt`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

TOOL_CALL_RE = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
OPEN_TAG = "<tool_call>"
CLOSE_TAG = "</tool_call>"


@dataclass
class ParsedToolCall:
    name: str
    arguments: str  # a JSON object as text, as OpenAI sends it


def _loads(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def parse_tool_calls(text: str) -> tuple[str, list[ParsedToolCall]]:
    """(content outside the tool-call blocks, the calls); blocks that are not valid calls stay in the content."""
    calls: list[ParsedToolCall] = []
    kept: list[str] = []
    pos = 0
    for m in TOOL_CALL_RE.finditer(text):
        obj = _loads(m.group(1))
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            continue
        args = obj.get("arguments", obj.get("parameters", {}))
        if isinstance(args, str):  # some models emit the arguments already encoded
            parsed = _loads(args)
            args = parsed if isinstance(parsed, dict) else args
        calls.append(ParsedToolCall(obj["name"], args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)))
        kept.append(text[pos:m.start()])
        pos = m.end()
    kept.append(text[pos:])
    return "".join(kept).strip() if calls else text, calls


def format_tool_call(name: str, arguments: str | dict) -> str:
    """An assistant tool call rendered back into the model's own convention (for history)."""
    args = _loads(arguments) if isinstance(arguments, str) else arguments
    payload = {"name": name, "arguments": args if args is not None else arguments}
    return f"{OPEN_TAG}\n{json.dumps(payload, ensure_ascii=False)}\n</tool_call>"


def tools_system_prompt(tools: list[dict]) -> str:
    """The Hermes-style tool preamble, for chat templates that do not render `tools` themselves."""
    lines = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return ("You are a function calling AI model. You may call one or more functions to assist with the user "
            "query. Here are the available tools:\n<tools>\n" + lines + "\n</tools>\n"
            "For each function call, return a JSON object with the function name and arguments within "
            "<tool_call></tool_call> tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
            "<args-json-object>}\n</tool_call>")


def with_tools_preamble(messages: list[dict], tools: list[dict]) -> list[dict]:
    """`messages` with the tool preamble appended to the system turn (one is added when missing)."""
    out = list(messages)
    preamble = tools_system_prompt(tools)
    if out and out[0]["role"] == "system":
        out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + preamble}
    else:
        out.insert(0, {"role": "system", "content": preamble})
    return out


def tool_call_schema(tools: list[dict], names: list[str] | None = None) -> dict:
    """JSON schema of one call to one of `tools` (restricted to `names`): for tool_choice=required."""
    options = []
    for t in tools:
        fn = t.get("function", t)
        if names is not None and fn["name"] not in names:
            continue
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        options.append({"type": "object", "properties": {"name": {"const": fn["name"]}, "arguments": params},
                        "required": ["name", "arguments"]})
    return options[0] if len(options) == 1 else {"anyOf": options}


def call_block_regex(call_schema: dict) -> str:
    """The regex of one `<tool_call>{json}</tool_call>` block whose JSON validates under `call_schema`."""
    from llmkit.generate.constrain.schema import schema_regex

    return re.escape(OPEN_TAG) + "\n?" + schema_regex(call_schema) + "\n?" + re.escape(CLOSE_TAG)


def tool_call_regex(tools: list[dict], names: list[str] | None = None) -> str:
    """One well-formed call to one of `tools` (restricted to `names`): what constrained decoding enforces."""
    return call_block_regex(tool_call_schema(tools, names))

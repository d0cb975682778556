"""Tools from typed Python functions: the JSON schema comes from the signature and the docstring.

    >>> @tool
    ... def add(a: int, b: int = 0) -> int:
    ...     '''Add two integers.
    ...
    ...     Args:
    ...         a: the first term.
    ...         b: the second term.
    ...     '''
    ...     return a + b
    >>> add.parameters["required"], add.parameters["properties"]["a"]["description"]
    (['a'], 'the first term.')
    >>> add.invoke('{"a": 2, "b": "3"}').content
    '5'

Pydantic builds the argument model (types, Literal / Enum choices, defaults, Optional)
and validates every call before the function runs. A call never raises out of
`invoke`: a bad argument, an exception or a timeout becomes a `ToolResult` with
`ok=False` whose text the model reads as the observation.
"""

from __future__ import annotations

import enum
import inspect
import json
import re
import threading
import time
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from llmkit.agents.errors import AgentError, ToolCallError, ToolDefinitionError

MAX_OBSERVATION_CHARS = 4000  # a tool that prints megabytes must not flood the context window


# ---- docstrings -------------------------------------------------------------------------------

_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params|Returns?|Raises|Yields|Examples?|Notes?)\s*:?\s*$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(description, {arg: description}) from a Google, NumPy or reST docstring.

    >>> parse_docstring('''Sum.\\n\\n    Args:\\n        a (int): first.\\n            More.\\n    :param b: second.''')
    ('Sum.', {'a': 'first. More.', 'b': 'second.'})
    """
    lines = inspect.cleandoc(doc or "").splitlines()
    summary: list[str] = []
    args: dict[str, str] = {}
    section, current, header_indent = None, None, 0
    for line in lines:
        rest = re.match(r"^\s*:param\s+(?:[\w\[\], |.]+\s+)?(\w+)\s*:\s*(.*)$", line)
        if rest:
            section, current = "args", rest.group(1)
            args[current] = rest.group(2).strip()
            header_indent = len(line) - len(line.lstrip())
            continue
        m = _SECTION.match(line)
        if re.match(r"^\s*:(returns?|rtype|raises?|type|yields?)\b[^:]*:", line):  # other reST fields
            section, current = "other", None
            continue
        if m:
            section = "args" if m.group(1).lower().startswith(("arg", "param")) else "other"
            current = None
            continue
        if section is None:
            summary.append(line)
        elif section == "args" and line.strip() and not set(line.strip()) <= {"-"}:
            # "name (type): text" (Google) | "name : type" (NumPy) | an indented continuation line
            g = re.match(r"^\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", line)
            indent = len(line) - len(line.lstrip())
            if g and (current is None or indent <= header_indent):
                current, header_indent = g.group(1), indent
                numpy_header = " : " in line  # NumPy puts the type after the colon, the text below
                args[current] = "" if numpy_header else g.group(2).strip()
            elif current is not None:
                args[current] = (args[current] + " " + line.strip()).strip()
    description = " ".join(p.strip() for p in "\n".join(summary).strip().split("\n\n")[0].splitlines())
    return description, args


# ---- schemas ----------------------------------------------------------------------------------

def inline_refs(schema: dict) -> dict:
    """Replace every local `$ref` by its target and drop `$defs`: tool schemas travel inside other schemas."""
    defs = schema.get("$defs", {})

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node and node["$ref"].startswith("#/$defs/"):
                target = dict(defs[node["$ref"].split("/")[-1]])
                extra = {k: v for k, v in node.items() if k != "$ref"}
                return walk({**target, **extra})
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(x) for x in node]
        return node

    return walk(schema)


DECODE_STRING_CHARS = 200  # an unbounded string lets a small model write until max_tokens inside a call
_ENFORCED = {"type", "properties", "required", "items", "minItems", "maxItems", "minLength", "maxLength",
             "pattern", "enum", "const", "anyOf", "oneOf", "allOf", "description", "default"}


def decoding_schema(node):
    """The schema constrained decoding enforces: strings non-empty and bounded, bounds it cannot check
    (minimum, ...) dropped. Pydantic still validates the full schema before the call, so nothing is lost."""
    if isinstance(node, dict):
        out = {k: decoding_schema(v) for k, v in node.items() if k in _ENFORCED}
        if "properties" in node:
            out["properties"] = {k: decoding_schema(v) for k, v in node["properties"].items()}
        if out.get("type") == "string" and "maxLength" not in out and "pattern" not in out:
            out["maxLength"] = DECODE_STRING_CHARS
            out.setdefault("minLength", 1)  # an empty argument is never what a call means; small models try it
        return out
    if isinstance(node, list):
        return [decoding_schema(x) for x in node]
    return node


def decoding_specs(specs: list[dict]) -> list[dict]:
    """OpenAI tool specs with each `parameters` replaced by its decoding_schema."""
    out = []
    for t in specs:
        fn = t.get("function", t)
        out.append({"type": "function", "function": {**fn, "parameters": decoding_schema(fn.get("parameters") or {})}})
    return out


def _strip_titles(node):
    """Pydantic titles every field ("A", "B"): noise in a prompt a small model has to read."""
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items()
                if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_strip_titles(x) for x in node]
    return node


def _args_model(fn: Callable, name: str, arg_docs: dict[str, str]):
    from pydantic import ConfigDict, Field, create_model

    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as e:  # a forward reference that does not resolve
        raise ToolDefinitionError(f"tool {name!r}: cannot resolve type hints ({e})",
                                  "use types importable where the function is defined") from None
    fields: dict[str, Any] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ToolDefinitionError(f"tool {name!r}: *{p.name} / **{p.name} have no schema",
                                      "declare every argument by name with a type")
        if p.name not in hints:
            raise ToolDefinitionError(f"tool {name!r}: argument {p.name!r} has no type annotation",
                                      f"annotate it, e.g. {p.name}: str")
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hints[p.name], Field(default, description=arg_docs.get(p.name) or None))
    try:
        return create_model(f"{name}_args", __config__=ConfigDict(extra="forbid"), **fields)
    except Exception as e:
        raise ToolDefinitionError(f"tool {name!r}: unsupported argument type ({e})",
                                  "use str, int, float, bool, Literal, Enum, lists, dicts or pydantic models") from None


def _validation_message(err) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(x) for x in e["loc"]) or "arguments"
        got = f" (got {e['input']!r:.60})" if e.get("type") not in ("missing",) and "input" in e else ""
        parts.append(f"{where}: {e['msg']}{got}")
    return "; ".join(parts)


# ---- tools ------------------------------------------------------------------------------------

@dataclass
class ToolResult:
    """One call's outcome: `content` is what goes back to the model (the error text when not ok)."""

    name: str
    arguments: dict
    ok: bool
    content: str
    seconds: float = 0.0

    def line(self, chars: int = 200) -> str:
        """One line for a console: `[calculator] 391` or `[sql] error: ...` (errors already say so)."""
        return f"[{self.name}] {' '.join(self.content.split())[:chars]}"

    def to_dict(self) -> dict:
        return {"name": self.name, "arguments": self.arguments, "ok": self.ok, "content": self.content,
                "seconds": round(self.seconds, 4)}


def _render(value) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    if len(text) > MAX_OBSERVATION_CHARS:
        text = text[:MAX_OBSERVATION_CHARS] + f"\n... [truncated {len(text) - MAX_OBSERVATION_CHARS} characters]"
    return text


def _with_timeout(fn: Callable, kwargs: dict, timeout: float | None):
    if timeout is None:
        return fn(**kwargs)
    box: dict[str, Any] = {}

    def target():
        try:
            box["value"] = fn(**kwargs)
        except BaseException as e:  # carried to the caller's thread
            box["error"] = e

    # A Python thread cannot be killed: a timed-out call is abandoned (daemon) and its result ignored.
    # Tools that must really stop (the Python sandbox) enforce their own limits in a subprocess.
    t = threading.Thread(target=target, daemon=True, name="llmkit-tool")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise ToolCallError(f"timed out after {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


@dataclass
class Tool:
    name: str
    description: str
    fn: Callable
    args_model: Any
    parameters: dict  # JSON schema of the arguments object, $refs inlined
    timeout: float | None = None
    example: dict | None = None  # {"question", "arguments", "result"}: a one-shot demonstration

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)  # the decorated function still works as itself

    def spec(self) -> dict:
        """The OpenAI `tools` entry."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}

    def validate(self, arguments: dict | str | None) -> dict:
        """Typed keyword arguments, or ToolCallError naming what is wrong."""
        from pydantic import ValidationError

        if arguments is None or arguments == "":
            arguments = {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError as e:
                raise ToolCallError(f"arguments are not valid JSON ({e.msg} at char {e.pos})") from None
        if not isinstance(arguments, dict):
            raise ToolCallError(f"arguments must be a JSON object, got {type(arguments).__name__}")
        try:
            model = self.args_model.model_validate(arguments)
        except ValidationError as e:
            raise ToolCallError(f"invalid arguments: {_validation_message(e)}") from None
        return {k: getattr(model, k) for k in type(model).model_fields}

    def invoke(self, arguments: dict | str | None, timeout: float | None = None) -> ToolResult:
        """Validate, call, render. Never raises for anything the call itself does."""
        t0 = time.perf_counter()
        shown = arguments if isinstance(arguments, dict) else {"_raw": arguments} if arguments else {}
        try:
            kwargs = self.validate(arguments)
            shown = {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in kwargs.items()}
            limits = [x for x in (timeout, self.timeout) if x is not None]  # the stricter one wins
            value = _with_timeout(self.fn, kwargs, min(limits) if limits else None)
            return ToolResult(self.name, shown, True, _render(value), time.perf_counter() - t0)
        except ToolCallError as e:
            return ToolResult(self.name, shown, False, f"error: {e}", time.perf_counter() - t0)
        except Exception as e:  # the tool's own bug: the model sees it, the run goes on
            return ToolResult(self.name, shown, False, f"error: {type(e).__name__}: {e}",
                              time.perf_counter() - t0)


def tool(fn: Callable | None = None, *, name: str | None = None, description: str | None = None,
         timeout: float | None = None, example: dict | None = None):
    """Decorator: `@tool` or `@tool(name=..., timeout=...)` turns a typed function into a Tool."""

    def wrap(f: Callable) -> Tool:
        tname = name or f.__name__
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", tname):
            raise ToolDefinitionError(f"tool name {tname!r} is not an identifier", "use letters, digits, _ or -")
        desc, arg_docs = parse_docstring(f.__doc__)
        model = _args_model(f, tname, arg_docs)
        params = _strip_titles(inline_refs(model.model_json_schema()))
        params.pop("additionalProperties", None)
        params.setdefault("properties", {})
        params.setdefault("required", [])
        return Tool(tname, description or desc or tname, f, model, params, timeout, example)

    return wrap(fn) if fn is not None else wrap


# ---- registry ---------------------------------------------------------------------------------

@dataclass
class ToolRegistry:
    """Tools by name; `call` is the one place a model's request meets a function."""

    tools: dict[str, Tool] = field(default_factory=dict)

    @classmethod
    def of(cls, tools: Iterable[Tool | Callable]) -> ToolRegistry:
        reg = cls()
        for t in tools:
            reg.add(t)
        return reg

    def add(self, t: Tool | Callable) -> Tool:
        t = t if isinstance(t, Tool) else tool(t)
        if t.name in self.tools:
            raise AgentError(f"two tools are named {t.name!r}", "give one of them another name=")
        self.tools[t.name] = t
        return t

    def __contains__(self, name: str) -> bool:
        return name in self.tools

    def __len__(self) -> int:
        return len(self.tools)

    def names(self) -> list[str]:
        return list(self.tools)

    def get(self, name: str) -> Tool:
        if name not in self.tools:
            raise AgentError(f"no tool named {name!r}", f"registered tools: {self.names() or 'none'}")
        return self.tools[name]

    def specs(self, names: Iterable[str] | None = None) -> list[dict]:
        return [t.spec() for t in self.subset(names)]

    def subset(self, names: Iterable[str] | None = None) -> list[Tool]:
        keep = set(names) if names is not None else None
        return [t for t in self.tools.values() if keep is None or t.name in keep]

    def call(self, name: str, arguments: dict | str | None, allowed: Iterable[str] | None = None,
             timeout: float | None = None) -> ToolResult:
        """A ToolResult for any request: unknown and not-allowed tools are error observations too."""
        args = arguments if isinstance(arguments, dict) else {}
        if allowed is not None and name not in set(allowed):
            return ToolResult(name, args, False,
                              f"error: tool {name!r} is not allowed here; allowed tools: {sorted(set(allowed))}")
        if name not in self.tools:
            return ToolResult(name, args, False, f"error: unknown tool {name!r}; available tools: {self.names()}")
        return self.tools[name].invoke(arguments, timeout)


def tool_message(result: ToolResult) -> dict:
    """The `tool` chat message that carries a result back (rendered by the model's chat template)."""
    return {"role": "tool", "name": result.name, "content": result.content}

"""JSON schema -> a regex whose every match is a JSON document valid under the schema.

Supported: type (one or a list), object properties + required (keys in declared
order), arrays (items, minItems, maxItems), strings (minLength, maxLength,
pattern), numbers, integers, booleans, null, enum, const, anyOf/oneOf, a single
allOf, $ref into $defs/definitions (not recursive). Keywords that would need
arithmetic (minimum, multipleOf, ...) are refused rather than silently ignored:
the output must validate. Annotations (title, description, format, ...) are fine.

Numbers have at most 15 digits before and after the decimal point and a 3-digit
exponent, so constrained decoding always ends a number.

Separators allow one optional space (`{"a": 1, "b": 2}` and `{"a":1,"b":2}` both
match) but no free whitespace: small models would otherwise pad forever.

    >>> import re
    >>> bool(re.fullmatch(schema_regex({"type": "object", "properties": {"n": {"type": "integer"}},
    ...                                 "required": ["n"]}), '{"n": 42}'))
    True
"""

from __future__ import annotations

import json
import re

from llmkit.generate.constrain.regex import ConstraintError

STRING_CHAR = r'([^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})'
STRING = f'"{STRING_CHAR}*"'
# at most 15 digits before and after the point (what a float64 holds exactly) and a 3-digit exponent:
# without a bound a small model can write 99999... until max_tokens inside a JSON value
INTEGER = r"-?(0|[1-9][0-9]{0,14})"
NUMBER = INTEGER + r"(\.[0-9]{1,15})?([eE][+-]?[0-9]{1,3})?"
BOOLEAN = "(true|false)"
NULL = "null"
COLON, COMMA = ":[ ]?", ",[ ]?"
# levels of brackets inside a free-form object/array: a regex cannot count brackets, so the nesting
# is unrolled, and each level multiplies the regex by 4 (depth 3: 29 k characters, 0.4 s to compile
# once; depth 4: 1.8 s; depth 5: 7 s). json_object allows 4 levels of objects/arrays in all.
ANY_DEPTH = 3

ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$id", "$comment", "format",
               "additionalProperties", "strict", "name", "deprecated", "readOnly", "writeOnly", "$defs",
               "definitions", "nullable"}
HANDLED = {"type", "properties", "required", "items", "minItems", "maxItems", "minLength", "maxLength", "pattern",
           "enum", "const", "anyOf", "oneOf", "allOf", "$ref"}


def _bad(message: str, fix: str = "simplify the schema") -> ConstraintError:
    return ConstraintError(f"invalid or unsupported JSON schema: {message}", fix)


def _literal(value) -> str:
    return re.escape(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def any_json(depth: int = ANY_DEPTH) -> str:
    scalars = [STRING, NUMBER, BOOLEAN, NULL]
    if depth > 0:
        scalars += [any_object(depth - 1), any_array(depth - 1)]
    return "(" + "|".join(scalars) + ")"


def any_object(depth: int = ANY_DEPTH) -> str:
    kv = f"{STRING}{COLON}{any_json(depth)}"
    return rf"\{{({kv}({COMMA}{kv})*)?\}}"


def any_array(depth: int = ANY_DEPTH) -> str:
    v = any_json(depth)
    return rf"\[({v}({COMMA}{v})*)?\]"


class _Compiler:
    def __init__(self, root: dict):
        self.root = root
        self.stack: list[str] = []  # $refs being expanded, to refuse recursion

    def value(self, s) -> str:
        if s is True or s == {}:
            return any_json()
        if not isinstance(s, dict):
            raise _bad(f"a schema must be an object, got {s!r:.60}")
        unknown = set(s) - ANNOTATIONS - HANDLED
        if unknown:
            raise _bad(f"keyword(s) {sorted(unknown)} cannot be enforced",
                       f"remove {sorted(unknown)} or check them after decoding")
        if "$ref" in s:
            return self.ref(s["$ref"])
        if "const" in s:
            return _literal(s["const"])
        if "enum" in s:
            if not isinstance(s["enum"], list) or not s["enum"]:
                raise _bad("enum must be a non-empty list")
            return "(" + "|".join(_literal(v) for v in s["enum"]) + ")"
        for key in ("anyOf", "oneOf"):
            if key in s:
                if not isinstance(s[key], list) or not s[key]:
                    raise _bad(f"{key} must be a non-empty list")
                return "(" + "|".join(self.value(x) for x in s[key]) + ")"
        if "allOf" in s:
            if not isinstance(s["allOf"], list) or len(s["allOf"]) != 1:
                raise _bad("allOf with more than one schema", "merge the schemas into one")
            return self.value(s["allOf"][0])
        kind = s.get("type")
        if kind is None:
            kind = "object" if "properties" in s else "array" if "items" in s else None
        if kind is None:
            return any_json()
        if isinstance(kind, list):
            if not kind:
                raise _bad("type list is empty")
            return "(" + "|".join(self.typed(s, k) for k in kind) + ")"
        return self.typed(s, kind)

    def typed(self, s: dict, kind) -> str:
        simple = {"integer": INTEGER, "number": NUMBER, "boolean": BOOLEAN, "null": NULL}
        if kind in simple:
            return simple[kind]
        if kind == "string":
            return self.string(s)
        if kind == "array":
            return self.array(s)
        if kind == "object":
            return self.object(s)
        raise _bad(f"unknown type {kind!r}", "use string, number, integer, boolean, null, array or object")

    def string(self, s: dict) -> str:
        if "pattern" in s:
            pat = s["pattern"]
            if not isinstance(pat, str):
                raise _bad("pattern must be a string")
            return '"(' + pat.removeprefix("^").removesuffix("$") + ')"'
        lo, hi = s.get("minLength", 0), s.get("maxLength")
        if not isinstance(lo, int) or (hi is not None and (not isinstance(hi, int) or hi < lo)) or lo < 0:
            raise _bad(f"minLength={lo!r} maxLength={hi!r}")
        if lo == 0 and hi is None:
            return STRING
        return f'"{STRING_CHAR}{{{lo},{"" if hi is None else hi}}}"'

    def array(self, s: dict) -> str:
        item = self.value(s.get("items", True))
        lo, hi = s.get("minItems", 0), s.get("maxItems")
        if not isinstance(lo, int) or lo < 0 or (hi is not None and (not isinstance(hi, int) or hi < lo)):
            raise _bad(f"minItems={lo!r} maxItems={hi!r}")
        if hi == 0:
            return r"\[\]"
        more_lo = max(lo - 1, 0)
        more_hi = "" if hi is None else str(hi - 1)
        body = f"{item}({COMMA}{item}){{{more_lo},{more_hi}}}"
        return rf"\[{body}\]" if lo > 0 else rf"\[({body})?\]"

    def object(self, s: dict) -> str:
        props = s.get("properties", {})
        required = s.get("required", [])
        if not isinstance(props, dict) or not isinstance(required, list):
            raise _bad("properties must be an object and required a list")
        missing = [r for r in required if r not in props]
        if missing:
            raise _bad(f"required {missing} not in properties", "declare every required key under properties")
        if not props:
            return any_object() if s.get("additionalProperties", True) is not False else r"\{\}"
        items = [(f"{_literal(k)}{COLON}{self.value(v)}", k in required) for k, v in props.items()]
        return r"\{" + self._members(items) + r"\}"

    @staticmethod
    def _members(items: list[tuple[str, bool]]) -> str:
        """Keys in order; optional ones may be skipped; commas only between present keys.

        after[i]: members i.. once something was written (each optional one is ',kv' or nothing);
        first[i]: members i.. before anything was written.
        """
        n = len(items)
        after = [""] * (n + 1)
        for i in range(n - 1, -1, -1):
            kv, req = items[i]
            after[i] = f"{COMMA}{kv}{after[i + 1]}" if req else f"({COMMA}{kv})?{after[i + 1]}"
        first = [""] * (n + 1)
        for i in range(n - 1, -1, -1):
            kv, req = items[i]
            first[i] = f"{kv}{after[i + 1]}" if req else f"({kv}{after[i + 1]}|{first[i + 1]})"
        return first[0]

    def ref(self, ref) -> str:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise _bad(f"$ref {ref!r} is not a local reference", "inline it or put it under #/$defs")
        if ref in self.stack:
            raise _bad(f"recursive $ref {ref!r}", "a regex cannot nest without bound; flatten the schema")
        node = self.root
        for part in ref[2:].split("/"):
            if not isinstance(node, dict) or part not in node:
                raise _bad(f"$ref {ref!r} points nowhere")
            node = node[part]
        self.stack.append(ref)
        try:
            return self.value(node)
        finally:
            self.stack.pop()


def schema_regex(schema) -> str:
    """The regex of every JSON text valid under `schema` (a dict, or JSON text of one)."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as e:
            raise _bad(f"not JSON ({e.msg})", "send the schema as a JSON object") from None
    return _Compiler(schema).value(schema)


def choice_regex(choices) -> str:
    if not isinstance(choices, (list, tuple)) or not choices or not all(isinstance(c, str) and c for c in choices):
        raise ConstraintError(f"choices must be a non-empty list of non-empty strings, got {choices!r:.80}",
                              'pass e.g. ["yes", "no"]')
    return "(" + "|".join(re.escape(c) for c in choices) + ")"

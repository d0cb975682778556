"""A small JSON filter language over chunk metadata, compiled to SQL or evaluated in Python.

    {"kind": "pdf"}                                   equality (shorthand for {"$eq": ...})
    {"year": {"$gte": 2020, "$lt": 2024}}             range: $gt $gte $lt $lte
    {"kind": {"$in": ["pdf", "markdown"]}}            membership: $in $nin; also $ne
    {"$and": [...]}, {"$or": [...]}, {"$not": {...}}  logic; several keys in one object = and

``matches`` is the obvious evaluator (the oracle); ``to_sql`` is what the stores run. They
must agree, and a test checks that they do on the same metadata.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from llmkit.core.errors import LLMKitError

COMPARE = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
HINT = ('write e.g. {"kind": "pdf"}, {"year": {"$gte": 2020}}, {"kind": {"$in": ["pdf", "html"]}}, '
        '{"$or": [...]}, {"$not": {...}}')


class FilterError(LLMKitError):
    """A --where expression that is not valid JSON or uses an unknown operator."""


def parse(where: str | dict | None) -> dict | None:
    """A filter from JSON text (CLI) or a dict; validated."""
    if where is None or where == "" or where == {}:
        return None
    if isinstance(where, str):
        try:
            where = json.loads(where)
        except json.JSONDecodeError as e:
            raise FilterError(f"--where {where!r} is not JSON ({e.msg} at column {e.colno})", HINT) from None
    validate(where)
    return where


def _check_scalar(v: Any, ctx: str) -> None:
    if not isinstance(v, (str, int, float, bool)) or v is None:
        raise FilterError(f"filter value {v!r} in {ctx} must be a string, number or boolean", HINT)


def validate(f: Any) -> None:
    if not isinstance(f, dict) or not f:
        raise FilterError(f"filter {json.dumps(f)} must be a non-empty JSON object", HINT)
    for key, val in f.items():
        if key in ("$and", "$or"):
            if not isinstance(val, list) or not val:
                raise FilterError(f"{key} needs a non-empty list of filters, got {json.dumps(val)}", HINT)
            for sub in val:
                validate(sub)
        elif key == "$not":
            validate(val)
        elif key.startswith("$"):
            raise FilterError(f"unknown filter operator {key!r}", HINT)
        elif not _KEY.match(key):
            raise FilterError(f"bad metadata key {key!r} (letters, digits, _ . -)", HINT)
        elif isinstance(val, dict):
            if not val:
                raise FilterError(f"empty condition for {key!r}", HINT)
            for op, arg in val.items():
                if op in ("$in", "$nin"):
                    if not isinstance(arg, list) or not arg:
                        raise FilterError(f"{op} for {key!r} needs a non-empty list, got {json.dumps(arg)}", HINT)
                    for a in arg:
                        _check_scalar(a, f"{key} {op}")
                elif op in COMPARE:
                    _check_scalar(arg, f"{key} {op}")
                else:
                    raise FilterError(f"unknown operator {op!r} for {key!r}", HINT)
        else:
            _check_scalar(val, key)


def _cmp(a: Any, op: str, b: Any) -> bool:
    if a is None:
        return op == "$ne"  # a missing key is "not equal" to anything, and fails every other test
    if isinstance(a, bool) or isinstance(b, bool):
        a, b = (int(a) if isinstance(a, bool) else a), (int(b) if isinstance(b, bool) else b)
    if isinstance(a, str) != isinstance(b, str):
        return op == "$ne"  # SQLite orders numbers before text; mixed comparisons are simply false here
    return {"$eq": a == b, "$ne": a != b, "$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[op]


def matches(f: dict | None, meta: dict) -> bool:
    """The reference evaluator: does ``meta`` satisfy filter ``f``?"""
    if not f:
        return True
    for key, val in f.items():
        if key == "$and":
            ok = all(matches(s, meta) for s in val)
        elif key == "$or":
            ok = any(matches(s, meta) for s in val)
        elif key == "$not":
            ok = not matches(val, meta)
        else:
            conds = val if isinstance(val, dict) else {"$eq": val}
            x = meta.get(key)
            ok = all((any(_cmp(x, "$eq", a) for a in arg) if op == "$in"
                      else not any(_cmp(x, "$eq", a) for a in arg) if op == "$nin"
                      else _cmp(x, op, arg)) for op, arg in conds.items())
        if not ok:
            return False
    return True


def to_sql(f: dict | None, column: Callable[[str], str], mark: str = "?",
           is_text: Callable[[str], str] = lambda e: f"typeof({e}) = 'text'",
           value: Callable[[Any], Any] | None = None) -> tuple[str, list]:
    """(SQL boolean expression, params). ``column(key)`` gives the SQL for a metadata key's value.

    The defaults are SQLite's (``?`` params, ``typeof``); PostgreSQL passes ``%s::jsonb`` marks,
    ``jsonb_typeof`` and JSON-encoded values, so both stores keep ``matches()``'s semantics.
    """
    value = value or _sql_value
    if not f:
        return "1 = 1", []
    parts, params = [], []
    for key, val in f.items():
        if key in ("$and", "$or"):
            subs = [to_sql(s, column, mark, is_text, value) for s in val]
            parts.append("(" + f" {key[1:].upper()} ".join(s for s, _ in subs) + ")")
            params += [p for _, ps in subs for p in ps]
        elif key == "$not":
            s, ps = to_sql(val, column, mark, is_text, value)
            parts.append(f"(NOT {s})")
            params += ps
        else:
            col = column(key)
            for op, arg in (val if isinstance(val, dict) else {"$eq": val}).items():
                if op in ("$in", "$nin"):
                    marks = ",".join([mark] * len(arg))
                    # NOT IN must hold for rows without the key (NULL), like matches()
                    parts.append(f"({col} IN ({marks}))" if op == "$in" else f"({col} IS NULL OR {col} NOT IN ({marks}))")
                    params += [value(a) for a in arg]
                elif op == "$ne":
                    parts.append(f"({col} IS NULL OR ({is_text(col)}) != ({is_text(mark)}) OR {col} != {mark})")
                    params += [value(arg), value(arg)]
                else:
                    # same-type only, as in matches(): no cross-type ordering surprises
                    parts.append(f"({col} {COMPARE[op]} {mark} AND ({is_text(col)}) = ({is_text(mark)}))")
                    params += [value(arg), value(arg)]
    return "(" + " AND ".join(parts) + ")", params


def _sql_value(v: Any) -> Any:
    return int(v) if isinstance(v, bool) else v  # json_extract gives 1/0 for true/false


def json_value(v: Any) -> str:
    """A filter value as the JSON text PostgreSQL compares with jsonb (booleans as 1/0, as above)."""
    return json.dumps(_sql_value(v))

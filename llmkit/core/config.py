"""Config dataclasses: presets by name, overrides by keyword, unknown keys are errors.

    cfg = from_dict(ModelConfig, {"n_layer": 2})      # ConfigError on unknown keys
    cfg = override(cfg, ["n_layer=4", "rope_theta=1e4"])  # CLI-style overrides
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Mapping, TypeVar

from llmkit.core.errors import ConfigError

T = TypeVar("T")


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _check_keys(cls: type, keys: typing.Iterable[str]) -> None:
    known = set(field_names(cls))
    unknown = sorted(set(keys) - known)
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} key(s): {', '.join(unknown)}",
            f"valid keys are: {', '.join(sorted(known))}",
        )


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build ``cls`` from a mapping; unknown keys raise ``ConfigError``."""
    _check_keys(cls, data.keys())
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(hints.get(k), v) for k, v in data.items()}
    return cls(**kwargs)


def replace(cfg: T, **overrides: Any) -> T:
    """``dataclasses.replace`` that raises ``ConfigError`` on unknown keys."""
    _check_keys(type(cfg), overrides.keys())
    return dataclasses.replace(cfg, **overrides)


def to_dict(cfg: Any) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}


def _coerce(hint: Any, value: Any) -> Any:
    """JSON gives lists where dataclasses want tuples; keep the rest as is."""
    origin = typing.get_origin(hint)
    if isinstance(value, list) and (hint is tuple or origin is tuple):
        return tuple(value)
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return _coerce(args[0], value)
    return value


def parse_value(text: str) -> Any:
    """Parse a CLI override value: JSON if it parses (numbers, bools, lists), else the string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def override(cfg: T, items: typing.Iterable[str]) -> T:
    """Apply ``key=value`` strings to a config dataclass."""
    updates: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value", "write it as e.g. n_layer=4")
        key, _, raw = item.partition("=")
        updates[key.strip().replace("-", "_")] = parse_value(raw.strip())
    _check_keys(type(cfg), updates.keys())
    hints = typing.get_type_hints(type(cfg))
    return dataclasses.replace(cfg, **{k: _coerce(hints.get(k), v) for k, v in updates.items()})


def preset(presets: Mapping[str, T], name: str, kind: str = "preset") -> T:
    """Look up a preset by name; unknown names list the valid ones."""
    if name not in presets:
        raise ConfigError(f"unknown {kind} {name!r}", f"choose one of: {', '.join(sorted(presets))}")
    return presets[name]

"""Merge configs: mergekit's YAML, parsed into dataclasses and checked up front.

    merge_method: ties
    base_model: runs/base
    models:
      - model: runs/base
      - model: runs/math
        parameters: {weight: 0.5, density: 0.5}
    parameters: {normalize: true}
    dtype: float32

A parameter value is a scalar, a gradient list (interpolated over the layers of
a slice: ``t: [0, 0.5, 1]``), or a list of ``{filter: NAME, value: ...}`` that
applies the first entry whose filter is a substring of the tensor name. Like
mergekit, filters match the HF name (``model.layers.3.self_attn.q_proj.weight``),
so its ``self_attn`` / ``mlp`` filters mean the same here (``mlp`` does not catch
the ``post_attention_layernorm``); a filter that names no HF tensor at all is
matched against our names instead (``attn.wq``, ``w_up``, ``mlp_norm``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from llmkit.core.errors import LLMKitError


class MergeError(LLMKitError):
    """A merge config or parent set that cannot be merged: bad method, parameters or models."""


@dataclass(frozen=True)
class Param:
    check: Callable[[Any], bool]
    expect: str  # what a valid value looks like, for the error message
    default: Any = None  # None = required
    per_model: bool = False  # set per model (weight, density) or once for the merge (t, normalize)


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


_WEIGHT = Param(_num, "a number", None, True)
_DENSITY = Param(lambda x: _num(x) and 0 <= x <= 1, "a fraction in [0, 1]", 1.0, True)
_LAMBDA = Param(_num, "a number", 1.0)
_BOOL = {True: Param(lambda x: isinstance(x, bool), "true or false", True),
         False: Param(lambda x: isinstance(x, bool), "true or false", False)}

# method -> parameter specs; defaults follow mergekit so its configs give the same result
METHODS: dict[str, dict[str, Param]] = {
    "linear": {"weight": _WEIGHT, "normalize": _BOOL[True]},
    "slerp": {"t": Param(lambda x: _num(x) and 0 <= x <= 1, "a fraction in [0, 1]")},
    "task_arithmetic": {"weight": _WEIGHT, "normalize": _BOOL[False], "lambda": _LAMBDA},
    "ties": {"weight": _WEIGHT, "density": _DENSITY, "normalize": _BOOL[True], "lambda": _LAMBDA},
    "dare_linear": {"weight": _WEIGHT, "density": _DENSITY, "normalize": _BOOL[False], "lambda": _LAMBDA,
                    "rescale": _BOOL[True]},
    "dare_ties": {"weight": _WEIGHT, "density": _DENSITY, "normalize": _BOOL[False], "lambda": _LAMBDA,
                  "rescale": _BOOL[True]},
    "passthrough": {"scale": Param(_num, "a number", 1.0, True)},
}
ALIASES = {"dare": "dare_linear", "soup": "linear", "model_soup": "linear", "frankenmerge": "passthrough"}
NEEDS_BASE = {"slerp", "task_arithmetic", "ties", "dare_linear", "dare_ties"}
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TOP_KEYS = {"merge_method", "models", "slices", "base_model", "parameters", "dtype", "seed", "name"}


@dataclass
class Source:
    model: str  # the spec as written (path or packaged name), resolved later
    layer_range: tuple[int, int] | None = None  # None: every layer of the model
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class Slice:
    sources: list[Source]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class MergeConfig:
    method: str
    slices: list[Slice]
    base_model: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    seed: int = 0
    name: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def specs(self) -> dict[str, Param]:
        return METHODS[self.method]

    def models(self) -> list[str]:
        """Every model the config names, base first, each once."""
        seen = [self.base_model] if self.base_model else []
        for s in self.slices:
            seen += [src.model for src in s.sources]
        return list(dict.fromkeys(seen))


# ---- evaluating a parameter setting -----------------------------------------------------------
def evaluate_setting(setting: Any, match: Callable[[str], bool], t: float) -> Any:
    """The value of one setting for a tensor at layer position t in [0, 1].

    ``match(filter)`` says whether a filter names this tensor.
    evaluate_setting([0, 1], match, 0.25) == 0.25; a list of k anchors spans the slice evenly.
    Returns None when no filter matches (the next scope or the default applies).
    """
    if isinstance(setting, dict):
        setting = [setting]
    if not isinstance(setting, list):
        return setting
    if not setting:
        return None
    if all(isinstance(v, dict) for v in setting):
        for cond in setting:
            flt = cond.get("filter")
            if flt is None or flt == "*" or match(str(flt)):
                return evaluate_setting(cond["value"], match, t)
        return None
    if not all(_num(v) for v in setting):
        return setting[int(t * (len(setting) - 1))]  # booleans / strings: pick, don't blend
    pos = t * (len(setting) - 1)
    i0 = int(pos)
    i1 = min(len(setting) - 1, i0 + 1)
    frac = pos - i0
    return (1 - frac) * setting[i0] + frac * setting[i1]


def resolve(method: str, key: str, scopes: list[dict[str, Any]], match: Callable[[str], bool], t: float,
            tensor: str = "") -> Any:
    """First scope (model, slice, global) that sets ``key`` for this tensor, else the default."""
    for scope in scopes:
        if key in scope:
            value = evaluate_setting(scope[key], match, t)
            if value is not None:
                return value
    spec = METHODS[method][key]
    if spec.default is None:
        raise MergeError(f"{method} needs parameter {key!r} for tensor {tensor!r}",
                         f"set {key} ({spec.expect}) under parameters: (globally or per model)")
    return spec.default


# ---- parsing -----------------------------------------------------------------------------------
def _leaves(setting: Any):
    if isinstance(setting, dict):
        if "value" not in setting or set(setting) - {"filter", "value"}:
            raise MergeError(f"bad conditional parameter {setting!r}", "write {filter: NAME, value: V}")
        yield from _leaves(setting["value"])
    elif isinstance(setting, list):
        for v in setting:
            yield from _leaves(v)
    else:
        yield setting


def _check_params(method: str, params: Any, where: str, per_model: bool) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise MergeError(f"parameters of {where} must be a mapping (got {params!r})", "write parameters: {key: value}")
    specs = METHODS[method]
    for key, setting in params.items():
        if key not in specs:
            raise MergeError(f"unknown parameter {key!r} for {method} in {where}",
                             f"{method} takes: {', '.join(specs)}")
        if per_model and not specs[key].per_model:
            raise MergeError(f"parameter {key!r} of {method} is set per model in {where}",
                             "move it to the top-level (or slice) parameters:")
        for leaf in _leaves(setting):
            if not specs[key].check(leaf):
                raise MergeError(f"parameter {key}={leaf!r} in {where} is not {specs[key].expect}",
                                 f"give {key} {specs[key].expect}")
    return dict(params)


def _source(method: str, item: Any, where: str, sliced: bool) -> Source:
    if isinstance(item, str):
        item = {"model": item}
    if not isinstance(item, dict) or "model" not in item:
        raise MergeError(f"{where} must be a mapping with a 'model' key (got {item!r})", "write - model: PATH")
    allowed = {"model", "parameters"} | ({"layer_range"} if sliced else set())
    extra = set(item) - allowed
    if extra:
        raise MergeError(f"unknown key {sorted(extra)[0]!r} in {where}", f"allowed keys: {', '.join(sorted(allowed))}")
    rng = item.get("layer_range")
    if sliced:
        if not (isinstance(rng, (list, tuple)) and len(rng) == 2 and all(isinstance(i, int) for i in rng)
                and 0 <= rng[0] < rng[1]):
            raise MergeError(f"layer_range {rng!r} in {where} is not [start, end) with 0 <= start < end",
                             "write layer_range: [0, 8]")
        rng = (rng[0], rng[1])
    return Source(str(item["model"]), rng, _check_params(method, item.get("parameters"), where, True))


def _method(raw: dict) -> str:
    name = raw.get("merge_method")
    if name is None:
        raise MergeError("the config has no merge_method", f"add merge_method: one of {', '.join(METHODS)}")
    name = ALIASES.get(str(name).lower(), str(name).lower())
    if name not in METHODS:
        raise MergeError(f"unknown merge_method {raw['merge_method']!r}", f"choose one of: {', '.join(METHODS)}")
    return name


def parse_config(raw: dict[str, Any]) -> MergeConfig:
    """Check a config mapping (as loaded from YAML) and normalise it to slices."""
    if not isinstance(raw, dict):
        raise MergeError(f"a merge config must be a mapping (got {type(raw).__name__})", "see docs/merging.md")
    extra = set(raw) - TOP_KEYS
    if extra:
        raise MergeError(f"unknown config key {sorted(extra)[0]!r}", f"allowed keys: {', '.join(sorted(TOP_KEYS))}")
    method = _method(raw)
    if ("models" in raw) == ("slices" in raw):
        raise MergeError("a merge config needs exactly one of 'models' or 'slices'",
                         "list whole models under models:, or layer ranges under slices:")
    if "models" in raw:
        items = raw["models"] or []
        slices = [Slice([_source(method, m, f"models[{i}]", False) for i, m in enumerate(items)])]
    else:
        slices = []
        for i, s in enumerate(raw["slices"] or []):
            if not isinstance(s, dict) or not s.get("sources") or set(s) - {"sources", "parameters"}:
                raise MergeError(f"slices[{i}] must be {{sources: [...], parameters: ...}} (got {s!r})",
                                 "see the passthrough example in docs/merging.md")
            srcs = [_source(method, m, f"slices[{i}].sources[{j}]", True) for j, m in enumerate(s["sources"])]
            if len({src.layer_range[1] - src.layer_range[0] for src in srcs}) > 1:
                raise MergeError(f"slices[{i}] mixes layer ranges of different lengths "
                                 f"{[list(src.layer_range) for src in srcs]}",
                                 "give every source of a slice the same number of layers")
            slices.append(Slice(srcs, _check_params(method, s.get("parameters"), f"slices[{i}]", False)))
    if not slices or not all(s.sources for s in slices):
        raise MergeError("the config lists no models", "add at least one model")
    dtype = DTYPES.get(str(raw.get("dtype", "float32")).lower())
    if dtype is None:
        raise MergeError(f"unknown dtype {raw.get('dtype')!r}", f"choose one of: {', '.join(DTYPES)}")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise MergeError(f"seed {seed!r} is not an integer", "write seed: 0")
    base = raw.get("base_model")
    cfg = MergeConfig(method, slices, str(base) if base is not None else None,
                      _check_params(method, raw.get("parameters"), "parameters", False), dtype, seed,
                      raw.get("name"), raw)
    _check_shape(cfg)
    return cfg


def _check_shape(cfg: MergeConfig) -> None:
    m = cfg.method
    if m in NEEDS_BASE and not cfg.base_model:
        raise MergeError(f"{m} needs a base_model", "add base_model: PATH (the model the others were tuned from)")
    for i, s in enumerate(cfg.slices):
        names = [src.model for src in s.sources]
        if m == "passthrough" and len(names) != 1:
            raise MergeError(f"passthrough takes one source per slice (slices[{i}] has {len(names)})",
                             "split the sources into separate slices")
        if m == "slerp":
            others = [n for n in names if n != cfg.base_model]
            if len(others) != 1 or len(names) > 2:
                raise MergeError(f"slerp merges the base with exactly one other model (got {names})",
                                 "list base_model and one other model")


def read_yaml(path: str | os.PathLike) -> Any:
    p = Path(path)
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MergeError(f"merge config {str(p)!r} not found", "pass the path of a YAML merge config") from None
    except yaml.YAMLError as e:
        raise MergeError(f"{str(p)!r} is not valid YAML ({str(e).splitlines()[0]})", "fix the YAML syntax") from e


def relative_to(spec: str, here: Path) -> str:
    """A model path relative to the config's directory, when it exists there and not in the CWD."""
    q = Path(spec).expanduser()
    return str(here / q) if not q.is_absolute() and not q.exists() and (here / q).exists() else spec


def load_config(path: str | os.PathLike) -> MergeConfig:
    """Read a YAML merge config; relative model paths resolve against the config's directory."""
    cfg = parse_config(read_yaml(path))
    here = Path(path).resolve().parent
    for s in cfg.slices:
        for src in s.sources:
            src.model = relative_to(src.model, here)
    if cfg.base_model:
        cfg.base_model = relative_to(cfg.base_model, here)
    return cfg

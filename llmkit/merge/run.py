"""Run a merge: plan the output tensors, merge them one at a time, write a checkpoint with its lineage.

    result = merge_models("merge.yaml", "runs/merged")
    lm = load_model("runs/merged")             # an ordinary llmkit checkpoint

Planning follows mergekit's layout so its configs mean the same here: the
embedding comes from the first slice's models, the final norm and head from the
last slice's, and layer j of a slice of n layers sees the gradient position
t = j / (n - 1) (t = 0 for the tensors outside the layers).
"""

from __future__ import annotations

import os
import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llmkit.core.checkpoint import save_checkpoint
from llmkit.formats.hf import hf_names
from llmkit.merge import methods as M
from llmkit.merge.config import (NEEDS_BASE, TORCH_DTYPES, MergeConfig, MergeError, Slice, Source, load_config,
                                 parse_config, read_yaml, resolve)
from llmkit.merge.moe import MoEConfig, assemble_moe, is_moe_config, load_moe_config, parse_moe_config
from llmkit.merge.sources import ModelSource, check_compatible, open_source

_LAYER = re.compile(r"blocks\.(\d+)\.(.+)")


@dataclass
class Input:
    source: ModelSource
    tensor: str  # name in the source model
    params: dict[str, Any]  # the model's own parameter scope
    is_base: bool


@dataclass
class Job:
    out: str  # name in the merged model
    inputs: list[Input]
    slice_params: dict[str, Any]
    t: float


@dataclass
class MergeResult:
    path: Path
    method: str
    n_tensors: int
    n_layer: int
    seconds: float
    parents: list[dict[str, Any]] = field(default_factory=list)


# ---- planning ------------------------------------------------------------------------------------
def _with_base(cfg: MergeConfig, s: Slice) -> list[Source]:
    """Sources of a slice, with the base model added where a method needs it (mergekit does the same)."""
    if cfg.method not in NEEDS_BASE or any(src.model == cfg.base_model for src in s.sources):
        return s.sources
    return [Source(cfg.base_model, s.sources[0].layer_range, {}), *s.sources]


def _inputs(cfg: MergeConfig, srcs: list[Source], opened: dict[str, ModelSource], name_of) -> list[Input]:
    return [Input(opened[s.model], name_of(s), s.parameters, s.model == cfg.base_model) for s in srcs]


def plan(cfg: MergeConfig, opened: dict[str, ModelSource]) -> tuple[list[Job], int]:
    """(jobs in output order, output layer count)."""
    slices = [(s, _with_base(cfg, s)) for s in cfg.slices]
    first, last = slices[0][1], slices[-1][1]
    names = opened[first[0].model].names
    pre = [n for n in names if not _LAYER.match(n) and n.startswith(("tok_emb", "pos_emb"))]
    post = [n for n in opened[last[0].model].names if not _LAYER.match(n) and n not in pre]
    jobs = [Job(n, _inputs(cfg, first, opened, lambda s, n=n: n), slices[0][0].parameters, 0.0) for n in pre]
    out_layer = 0
    for s, srcs in slices:
        for src in srcs:
            src_layers = opened[src.model].config.n_layer
            lo, hi = src.layer_range or (0, src_layers)
            if hi > src_layers:
                raise MergeError(f"layer_range [{lo}, {hi}] of {src.model!r} exceeds its {src_layers} layers",
                                 f"use an end of at most {src_layers}")
        spans = [src.layer_range or (0, opened[src.model].config.n_layer) for src in srcs]
        n = spans[0][1] - spans[0][0]
        if any(b - a != n for a, b in spans):
            raise MergeError(f"models in one slice have different layer counts {[b - a for a, b in spans]}",
                             "merge models with the same number of layers, or give layer_range slices")
        suffixes = [m[2] for m in map(_LAYER.match, opened[srcs[0].model].names) if m and m[1] == "0"]
        for j in range(n):
            t = j / (n - 1) if n > 1 else 1.0
            for suffix in suffixes:
                jobs.append(Job(f"blocks.{out_layer}.{suffix}",
                                [Input(opened[src.model], f"blocks.{a + j}.{suffix}", src.parameters,
                                       src.model == cfg.base_model) for src, (a, _) in zip(srcs, spans)],
                                s.parameters, t))
            out_layer += 1
    jobs += [Job(n, _inputs(cfg, last, opened, lambda s, n=n: n), slices[-1][0].parameters, 0.0) for n in post]
    return jobs, out_layer


# ---- one tensor ----------------------------------------------------------------------------------
def _generator(seed: int, name: str, i: int) -> torch.Generator:
    # one stream per (tensor, model): the result does not depend on merge order or threads
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(f"{name}|{i}".encode())) % (2**63))


class FilterNames:
    """Which name a parameter filter is matched against: the HF name if the filter names any HF tensor."""

    def __init__(self, hf: dict[str, str]):
        self.hf = hf
        self._hf_filter: dict[str, bool] = {}

    def matcher(self, ours: str):
        theirs = self.hf.get(ours, ours)

        def match(flt: str) -> bool:
            if flt not in self._hf_filter:
                self._hf_filter[flt] = any(flt in n for n in self.hf.values())
            return flt in (theirs if self._hf_filter[flt] else ours)

        return match


def merge_tensor(cfg: MergeConfig, job: Job, names: FilterNames) -> torch.Tensor:
    """Merge one output tensor from its inputs with the config's method and resolved parameters."""
    m = cfg.method
    match = names.matcher(job.out)
    shared = lambda key: resolve(m, key, [job.slice_params, cfg.parameters], match, job.t, job.out)  # noqa: E731
    per = lambda inp, key: resolve(m, key, [inp.params, job.slice_params, cfg.parameters], match, job.t,  # noqa: E731
                                   job.out)
    xs = [inp.source.get(inp.tensor) for inp in job.inputs]
    if m == "passthrough":
        scale = per(job.inputs[0], "scale")
        # a copy: a frankenmerge may repeat a layer, and safetensors refuses shared storage
        return xs[0].clone() if scale == 1 else xs[0].float() * scale
    if m == "linear":
        weights = [per(inp, "weight") for inp in job.inputs]
        normalize = shared("normalize")
        if normalize and sum(weights) == 0:
            raise MergeError(f"linear weights {weights} sum to 0 for {job.out!r}", "use weights with a non-zero sum")
        return M.linear(xs, weights, normalize)
    b = next(i for i, inp in enumerate(job.inputs) if inp.is_base)
    base, others = xs[b], [x for i, x in enumerate(xs) if i != b]
    rest = [inp for i, inp in enumerate(job.inputs) if i != b]
    if m == "slerp":
        return M.slerp(shared("t"), base, others[0])
    if not rest:
        return base
    weights = [per(inp, "weight") for inp in rest]
    normalize, lam = shared("normalize"), shared("lambda")
    if m == "task_arithmetic":
        return M.task_arithmetic(base, others, weights, normalize, lam)
    densities = [per(inp, "density") for inp in rest]
    if m == "ties":
        return M.ties(base, others, weights, densities, normalize, lam)
    deltas = [M.dare(d, k, _generator(cfg.seed, job.out, i), shared("rescale"))
              for i, (d, k) in enumerate(zip(M.task_vectors(base, others), densities))]
    consensus = "sum" if m == "dare_ties" else None
    return M.combine_task_vectors(base, deltas, weights, consensus, normalize, lam)


# ---- the whole merge -----------------------------------------------------------------------------
def _open_all(cfg: MergeConfig) -> dict[str, ModelSource]:
    opened = {spec: open_source(spec) for spec in cfg.models()}
    ref = opened[cfg.base_model or cfg.models()[0]]
    check_compatible(ref, [s for k, s in opened.items() if s is not ref], ignore_layers=cfg.method == "passthrough")
    return opened


def _lineage(cfg: MergeConfig, opened: dict[str, ModelSource]) -> dict[str, Any]:
    parents = []
    for spec, src in opened.items():
        entry = src.lineage_entry()
        entry["role"] = "base" if spec == cfg.base_model else "model"
        entry["parameters"] = next((s.parameters for sl in cfg.slices for s in sl.sources if s.model == spec), {})
        parents.append(entry)
    return {"method": cfg.method, "parameters": cfg.parameters, "dtype": cfg.dtype, "seed": cfg.seed,
            "slices": [{"sources": [{"model": s.model, "layer_range": list(s.layer_range) if s.layer_range else None,
                                     "parameters": s.parameters} for s in sl.sources],
                        "parameters": sl.parameters} for sl in cfg.slices],
            "parents": parents}


def _tokenizer_files(src: ModelSource) -> dict[str, bytes]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src.tokenizer.save(tmp)
        return {f.name: f.read_bytes() for f in Path(tmp).iterdir() if f.is_file()}


def read_config(config: str | os.PathLike | dict | MergeConfig | MoEConfig) -> MergeConfig | MoEConfig:
    """A merge or MoE config from a YAML path, a mapping, or an already parsed config."""
    if isinstance(config, (MergeConfig, MoEConfig)):
        return config
    if isinstance(config, dict):
        return parse_moe_config(config) if is_moe_config(config) else parse_config(config)
    return load_moe_config(config) if is_moe_config(read_yaml(config)) else load_config(config)


def merge_models(config: str | os.PathLike | dict | MergeConfig | MoEConfig, out: str | os.PathLike,
                 progress: bool = False) -> MergeResult:
    """Merge the models a mergekit-style config names into an llmkit checkpoint at ``out`` (atomic).

    A config with ``experts:`` assembles a mixture of experts instead (llmkit.merge.moe).
    """
    t0 = time.perf_counter()
    cfg = read_config(config)
    if isinstance(cfg, MoEConfig):
        out_tensors, out_cfg, ref, lineage = assemble_moe(cfg)
        method, name = "moe", cfg.name
    else:
        out_tensors, out_cfg, ref, lineage = _merge_tensors(cfg, progress)
        method, name = cfg.method, cfg.name
    out = Path(out)
    meta = {"stage": "merge", "name": name or out.name, "parent": lineage["parents"][0]["path"], "lineage": lineage}
    path = save_checkpoint(out, out_tensors, out_cfg.to_dict(), meta, _tokenizer_files(ref))
    return MergeResult(path, method, len(out_tensors), out_cfg.n_layer, time.perf_counter() - t0, lineage["parents"])


def _merge_tensors(cfg: MergeConfig, progress: bool):
    opened = _open_all(cfg)
    ref = opened[cfg.base_model or cfg.models()[0]]
    jobs, n_layer = plan(cfg, opened)
    names = FilterNames({k: v for k, v in hf_names(ref.config.replace(n_layer=n_layer)).items()
                         if k in {j.out for j in jobs}})
    dtype = TORCH_DTYPES[cfg.dtype]
    out_tensors: dict[str, torch.Tensor] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc=f"merge ({cfg.method})", unit="tensor")
    with torch.no_grad():
        for job in jobs:
            out_tensors[job.out] = merge_tensor(cfg, job, names).to(dtype).contiguous()
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return out_tensors, ref.config.replace(n_layer=n_layer), ref, _lineage(cfg, opened)

"""Checkpoint directories: safetensors weights + JSON, written atomically.

Layout::

    ckpt/
      model.safetensors   tensors (tied weights stored once; the model re-ties on load)
      config.json         the model config as a plain dict
      meta.json           {"format": N, "stage": ..., "parent": ..., "step": ..., ...}
      tokenizer.json ...  tokenizer files, copied verbatim

Writes go to a temporary sibling directory that is fsynced and then renamed
into place, so a crash or a failed write never leaves a half-written
checkpoint and never destroys the previous one. Loads never unpickle.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from llmkit.core.errors import CheckpointError
from llmkit.core.fileio import atomic_write_dir, recover_dir

FORMAT = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
META = "meta.json"


@dataclass
class Checkpoint:
    path: Path
    tensors: Mapping[str, torch.Tensor]  # a dict, or LazyTensors from load_checkpoint(lazy=True)
    config: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


def is_checkpoint(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / META).is_file() and (p / WEIGHTS).is_file()


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(
    path: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    meta: Mapping[str, Any] | None = None,
    files: Mapping[str, bytes | str | os.PathLike] | None = None,
) -> Path:
    """Write a checkpoint directory atomically.

    ``files`` maps extra file names to bytes (written as is) or to paths (copied).
    """
    meta_out = {"format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    meta_out.update(meta or {})
    meta_out["format"] = FORMAT
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}

    def fill(tmp: Path) -> None:
        save_file(contiguous, str(tmp / WEIGHTS), metadata={"format": "pt"})
        _write_json(tmp / CONFIG, dict(config))
        _write_json(tmp / META, meta_out)
        for name, content in (files or {}).items():
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            else:
                shutil.copyfile(content, tmp / name)

    try:
        return atomic_write_dir(path, fill)
    except OSError as e:
        raise CheckpointError(f"could not write checkpoint {str(path)!r}: {e.strerror or e}",
                              "check the path, permissions and free disk space") from e


def upgrade_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """Bring an older meta.json up to FORMAT. One place for every upgrade."""
    version = meta.get("format")
    if not isinstance(version, int):
        raise CheckpointError(f"meta.json has no integer 'format' (got {version!r})",
                              "this directory was not written by llmkit")
    if version > FORMAT:
        raise CheckpointError(f"checkpoint format {version} is newer than this llmkit ({FORMAT})",
                              "upgrade llmkit: pip install -U llmkit")
    # format 1 is the first; future upgrades go here, oldest first.
    return meta


def read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as e:
        raise CheckpointError(f"missing {path.name} in {str(path.parent)!r}",
                              "point at a directory written by `llmkit convert` or training") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{str(path)!r} is not valid JSON ({e})", "the file is corrupted; re-create it") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{str(path)!r} must hold a JSON object", "the file is corrupted; re-create it")
    return data


_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


class LazyTensors(Mapping[str, torch.Tensor]):
    """The tensors of safetensors files, each read from disk only when asked for, into memory of its own.

    ``load_file`` maps the whole file and hands out views of that one mapping, so while any one
    tensor is alive (the embedding, say) every page ever read stays resident. Here a tensor is its
    own buffer: one that is dropped (a layer quantized as it loads) is memory given back.

        t = LazyTensors([path])["blocks.0.attn.wq.weight"]   # reads these bytes now, and only these
    """

    def __init__(self, files: list[Path]):
        self._where: dict[str, tuple[Path, int, int, torch.dtype, list[int]]] = {}
        for path in files:
            try:
                with open(path, "rb") as f:
                    n = int.from_bytes(f.read(8), "little")
                    if n > os.fstat(f.fileno()).st_size:
                        raise ValueError(f"header length {n} exceeds the file")
                    header = json.loads(f.read(n))
                for name, info in header.items():
                    if name != "__metadata__":
                        start, end = info["data_offsets"]
                        self._where[name] = (path, 8 + n + start, end - start, _DTYPES[info["dtype"]], info["shape"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise CheckpointError(f"{str(path)!r} is not a readable safetensors file ({e})",
                                      "re-create the checkpoint") from e

    def __getitem__(self, name: str) -> torch.Tensor:
        path, offset, nbytes, dtype, shape = self._where[name]
        if nbytes == 0:
            return torch.empty(shape, dtype=dtype)
        buf = bytearray(nbytes)  # the tensor below shares this memory: one copy, freed with the tensor
        with open(path, "rb") as f:
            f.seek(offset)
            if f.readinto(buf) != nbytes:
                raise CheckpointError(f"{str(path)!r} is truncated (tensor {name!r})", "re-create the checkpoint")
        return torch.frombuffer(buf, dtype=torch.uint8).view(dtype).reshape(shape)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu",
                    lazy: bool = False) -> Checkpoint:
    """Read a checkpoint; ``lazy`` leaves the weights on disk until each is indexed (LazyTensors, CPU only)."""
    p = Path(path)
    recover_dir(p)
    if not p.is_dir():
        raise CheckpointError(f"checkpoint directory {str(path)!r} does not exist",
                              "check the path, or create one with `llmkit convert`")
    meta = upgrade_meta(read_json(p / META))
    config = read_json(p / CONFIG)
    if lazy:
        if not (p / WEIGHTS).is_file():
            raise CheckpointError(f"missing {WEIGHTS} in {str(path)!r}", "the checkpoint is incomplete; re-create it")
        return Checkpoint(path=p, tensors=LazyTensors([p / WEIGHTS]), config=config, meta=meta)
    try:
        tensors = load_file(str(p / WEIGHTS), device=str(device))
    except FileNotFoundError as e:
        raise CheckpointError(f"missing {WEIGHTS} in {str(path)!r}", "the checkpoint is incomplete; re-create it") from e
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"{str(p / WEIGHTS)!r} is corrupted ({e})", "re-create the checkpoint") from e
    return Checkpoint(path=p, tensors=tensors, config=config, meta=meta)

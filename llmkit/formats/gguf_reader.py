"""Read GGUF files: metadata, tensor directory, raw and dequantized tensors.

A GGUF file (little-endian throughout) is::

    magic "GGUF" | version: u32 | n_tensors: u64 | n_kv: u64
    n_kv       x  key: string | value_type: u32 | value
    n_tensors  x  name: string | n_dims: u32 | dims: u64[n_dims] | ggml_type: u32 | offset: u64
    padding to `general.alignment` (default 32)
    tensor data; each tensor starts at data_start + offset

where a string is ``length: u64 | utf-8 bytes`` and an array value is
``element_type: u32 | count: u64 | elements``. ``dims`` are listed fastest
first (``dims[0]`` is the row length), the reverse of torch's order.

We parse the header ourselves instead of using ``gguf.GGUFReader`` because
the reference reader builds a numpy view per array element, which costs
seconds on a 49k-token vocabulary; here strings are decoded straight from the
memory map and numeric arrays come out of one ``np.frombuffer`` each.
Tensor data is never read at open: it stays memory-mapped, but every
tensor's byte range is checked against the file size up front, so a truncated
download fails at load time rather than in the middle of a forward pass.
"""

from __future__ import annotations

import difflib
import math
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from llmkit.core.errors import FormatError
from llmkit.formats.gguf_quants import GGML_TYPES_BY_ID, GGMLType, dequantize

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)  # v1 used 32-bit counts/lengths; v2 and v3 share one layout
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ARRAY_DEPTH = 8  # arrays of arrays are legal; bound the recursion on corrupt input

# GGUF value type id -> (struct format, numpy dtype) for fixed-size scalars.
_SCALARS: dict[int, tuple[str, str]] = {
    0: ("<B", "<u1"),  # UINT8
    1: ("<b", "<i1"),  # INT8
    2: ("<H", "<u2"),  # UINT16
    3: ("<h", "<i2"),  # INT16
    4: ("<I", "<u4"),  # UINT32
    5: ("<i", "<i4"),  # INT32
    6: ("<f", "<f4"),  # FLOAT32
    7: ("<?", "?"),  # BOOL (one byte)
    10: ("<Q", "<u8"),  # UINT64
    11: ("<q", "<i8"),  # INT64
    12: ("<d", "<f8"),  # FLOAT64
}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor directory."""

    name: str
    ggml_type: str  # e.g. "Q4_1"
    shape: tuple[int, ...]  # torch orientation (GGUF dims reversed)
    n_bytes: int  # size of the packed data
    offset: int  # absolute byte offset of the data in the file


class _Truncated(Exception):
    """Internal: a read ran past the end of the file (turned into FormatError)."""


class _Header:
    """A cursor over the memory-mapped file that decodes GGUF header values.

    Every read checks the remaining length first, so corrupt lengths surface
    as ``_Truncated`` / FormatError instead of numpy or struct exceptions.
    """

    def __init__(self, buf: mmap.mmap, path: Path):
        self.buf, self.path, self.pos, self.size = buf, path, 0, len(buf)

    def _need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise _Truncated(f"{what} at byte {self.pos} needs {n} bytes, only {self.size - self.pos} left")

    def scalar(self, vtype: int, what: str = "value") -> Any:
        fmt = _SCALARS[vtype][0]
        n = struct.calcsize(fmt)
        self._need(n, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return v

    def u32(self, what: str) -> int:
        return self.scalar(4, what)

    def u64(self, what: str) -> int:
        return self.scalar(10, what)

    def string(self, what: str = "string") -> str:
        n = self.u64(f"{what} length")
        self._need(n, what)
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        # surrogateescape: a vocabulary may hold byte tokens that are not valid
        # UTF-8; keep them losslessly instead of failing (re-encode the same way).
        return raw.decode("utf-8", "surrogateescape")

    def value(self, vtype: int, key: str, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            return self.scalar(vtype, f"value of {key!r}")
        if vtype == _STRING:
            return self.string(f"value of {key!r}")
        if vtype == _ARRAY and depth < MAX_ARRAY_DEPTH:
            return self.array(key, depth)
        what = f"arrays nested deeper than {MAX_ARRAY_DEPTH}" if vtype == _ARRAY else f"unknown value type {vtype}"
        raise FormatError(
            f"{self.path}: corrupted header: metadata key {key!r} has {what}",
            fix="the file is damaged or from an incompatible writer; re-download or re-convert it",
        )

    def array(self, key: str, depth: int) -> list:
        etype = self.u32(f"element type of {key!r}")
        count = self.u64(f"length of {key!r}")
        # A count whose smallest possible encoding overruns the file is corruption.
        self._need(count * _min_size(etype), f"array {key!r} of {count} elements")
        if etype in _SCALARS:
            dtype = np.dtype(_SCALARS[etype][1])
            values = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
            self.pos += count * dtype.itemsize
            return values.tolist()
        if etype == _STRING:
            return self._strings(count, key)
        return [self.value(etype, key, depth + 1) for _ in range(count)]

    def _strings(self, count: int, key: str) -> list[str]:
        # The hot loop of opening a model (vocab + merges = ~100k strings), kept minimal.
        buf, pos, size, out = self.buf, self.pos, self.size, []
        unpack, append = struct.Struct("<Q").unpack_from, out.append
        for _ in range(count):
            if pos + 8 > size:
                self.pos = pos
                self._need(8, f"string in {key!r}")
            (n,) = unpack(buf, pos)
            pos += 8
            end = pos + n
            if end > size:
                self.pos = pos
                self._need(n, f"string in {key!r}")
            append(buf[pos:end].decode("utf-8", "surrogateescape"))
            pos = end
        self.pos = pos
        return out


def _min_size(vtype: int) -> int:
    """Fewest bytes a value of this type can occupy (strings and arrays: their length fields)."""
    if vtype in _SCALARS:
        return struct.calcsize(_SCALARS[vtype][0])
    return {_STRING: 8, _ARRAY: 12}.get(vtype, 1)


class GGUFFile:
    """An open GGUF file. Build with :func:`read_gguf`.

    Attributes: ``path``, ``version``, ``metadata`` (key -> Python value; arrays
    are lists), ``tensors`` (name -> TensorInfo, in file order), ``alignment``
    and ``data_start`` (byte offset of the tensor data section).
    """

    def __init__(self, path: Path, version: int, metadata: dict[str, Any], tensors: dict[str, TensorInfo],
                 alignment: int, data_start: int, data: np.ndarray):
        self.path = path
        self.version = version
        self.metadata = metadata
        self.tensors = tensors
        self.alignment = alignment
        self.data_start = data_start
        self._data = data  # uint8 view of the whole (memory-mapped, read-only) file

    @property
    def architecture(self) -> str:
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str):
            raise FormatError(
                f"{self.path}: no general.architecture in the GGUF metadata",
                fix="this GGUF does not describe a model; convert it with llama.cpp's convert_hf_to_gguf.py",
            )
        return arch

    def info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.tensors, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"it has {len(self.tensors)} tensors"
            raise FormatError(f"{self.path}: no tensor named {name!r}", fix=hint) from None

    def raw(self, name: str) -> tuple[np.ndarray, str, tuple[int, ...]]:
        """``(packed uint8 view, ggml type name, torch shape)``; no copy, read-only.

        ``dequantize(*f.raw(name))`` equals ``f.tensor(name)``.
        """
        t = self.info(name)
        return self._data[t.offset : t.offset + t.n_bytes], t.ggml_type, t.shape

    def tensor(self, name: str) -> torch.Tensor:
        """The tensor dequantized to float32, in torch orientation (a new, writable tensor)."""
        return dequantize(*self.raw(name))

    def __repr__(self) -> str:
        return f"GGUFFile({str(self.path)!r}, v{self.version}, {len(self.metadata)} keys, {len(self.tensors)} tensors)"


def read_gguf(path: Union[str, os.PathLike]) -> GGUFFile:
    """Open a GGUF file: parse metadata and the tensor directory, memory-map the data.

    Raises FormatError (one line, with a fix) for a missing path, a file that is
    not GGUF, an unsupported version, a corrupted header or a truncated file.
    """
    path = Path(path)
    buf = _map(path)
    head = _Header(buf, path)
    try:
        version, n_tensors, n_kv = _preamble(head)
        metadata = _read_metadata(head, n_kv)
        alignment = _alignment(metadata, path)
        infos = _read_tensor_infos(head, n_tensors)
    except _Truncated as e:
        raise FormatError(f"{path}: truncated or corrupted GGUF header ({e})",
                          fix="the file is incomplete or damaged; re-download or re-convert it") from None
    data_start = -(-head.pos // alignment) * alignment  # round up to the alignment
    tensors = _place_tensors(infos, data_start, alignment, len(buf), path)
    data = np.frombuffer(buf, dtype=np.uint8)
    return GGUFFile(path, version, metadata, tensors, alignment, data_start, data)


def _map(path: Path) -> mmap.mmap:
    if not path.exists():
        raise FormatError(f"{path}: no such file", fix="check the path (and that the download finished)")
    if path.is_dir():
        raise FormatError(f"{path}: is a directory, not a GGUF file", fix="pass the .gguf file inside it")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 24:  # magic + version + two counts
                raise FormatError(f"{path}: file is {'empty' if size == 0 else f'only {size} bytes'}, not a GGUF model",
                                  fix="the download or conversion did not finish; re-download or re-convert it")
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # stays valid after close
    except OSError as e:
        raise FormatError(f"{path}: cannot read file ({e.strerror or e})", fix="check the path and its permissions") from None


def _preamble(head: _Header) -> tuple[int, int, int]:
    path = head.path
    magic = bytes(head.buf[:4])
    if magic != GGUF_MAGIC:
        hint = "pass a .gguf file (llama.cpp's format)"
        if magic in (b"lmgg", b"fmgg", b"tjgg", b"algg"):  # the pre-GGUF GGML family, as read little-endian
            hint = "this is a pre-GGUF GGML file; convert it with llama.cpp's convert_llama_ggml_to_gguf.py"
        raise FormatError(f"{path}: not a GGUF file (starts with {magic!r}, expected b'GGUF')", fix=hint)
    head.pos = 4
    version = head.u32("version")
    if version not in SUPPORTED_VERSIONS:
        if version & 0xFFFF == 0 and (version >> 16) != 0:  # a small number byte-swapped
            msg, fix = "is a big-endian GGUF", "re-convert it on a little-endian machine (the default)"
        else:
            msg, fix = f"has unsupported GGUF version {version}", "re-convert it with a current llama.cpp (GGUF v3)"
        raise FormatError(f"{path}: {msg}", fix=fix)
    n_tensors = head.u64("tensor count")
    n_kv = head.u64("metadata count")
    # The smallest tensor entry is 8 (name length) + 4 + 8 + 4 + 8 bytes; the smallest
    # key/value 8 + 4 + 1. More entries than fit in the file means corrupted counts.
    if n_tensors * 32 > head.size or n_kv * 13 > head.size:
        raise FormatError(
            f"{path}: corrupted header: {n_tensors} tensors and {n_kv} metadata keys cannot fit in {head.size} bytes",
            fix="the file is damaged; re-download or re-convert it",
        )
    return version, n_tensors, n_kv


def _read_metadata(head: _Header, n_kv: int) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = head.string("metadata key")
        if key in metadata:
            raise FormatError(f"{head.path}: corrupted header: metadata key {key!r} appears twice",
                              fix="the file is damaged; re-download or re-convert it")
        vtype = head.u32(f"value type of {key!r}")
        metadata[key] = head.value(vtype, key)
    return metadata


def _alignment(metadata: dict[str, Any], path: Path) -> int:
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0 or alignment & (alignment - 1):
        raise FormatError(f"{path}: general.alignment is {alignment!r}, must be a positive power of two",
                          fix="the file is damaged or badly written; re-convert it")
    return alignment


def _read_tensor_infos(head: _Header, n_tensors: int) -> list[tuple[str, list[int], int, int]]:
    infos = []
    for _ in range(n_tensors):
        name = head.string("tensor name")
        n_dims = head.u32(f"dimension count of tensor {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise FormatError(f"{head.path}: corrupted header: tensor {name!r} has {n_dims} dimensions (1-{MAX_DIMS} allowed)",
                              fix="the file is damaged; re-download or re-convert it")
        dims = [head.u64(f"dimensions of tensor {name!r}") for _ in range(n_dims)]
        type_id = head.u32(f"type of tensor {name!r}")
        offset = head.u64(f"offset of tensor {name!r}")
        infos.append((name, dims, type_id, offset))
    return infos


def _place_tensors(infos, data_start: int, alignment: int, file_size: int, path: Path) -> dict[str, TensorInfo]:
    """Validate every tensor entry and turn it into a TensorInfo with an absolute offset."""
    tensors: dict[str, TensorInfo] = {}
    for name, dims, type_id, offset in infos:
        t = GGML_TYPES_BY_ID.get(type_id)
        if t is None:
            raise FormatError(f"{path}: tensor {name!r} has unknown ggml type id {type_id}",
                              fix="the file uses a type newer than llmkit knows, or is damaged")
        if name in tensors:
            raise FormatError(f"{path}: corrupted header: tensor {name!r} appears twice",
                              fix="the file is damaged; re-download or re-convert it")
        n_bytes = _tensor_bytes(name, dims, t, path)
        if offset % alignment:
            raise FormatError(f"{path}: corrupted header: tensor {name!r} offset {offset} is not a multiple of {alignment}",
                              fix="the file is damaged; re-download or re-convert it")
        start = data_start + offset
        if start + n_bytes > file_size:  # python ints: absurd dims cannot overflow past this check
            raise FormatError(
                f"{path}: truncated file: tensor {name!r} ({t.name}, dims {dims}) needs bytes "
                f"{start}..{start + n_bytes} but the file has only {file_size}",
                fix="the download or conversion did not finish (or the header is damaged); re-download or re-convert it",
            )
        tensors[name] = TensorInfo(name, t.name, tuple(reversed(dims)), n_bytes, start)
    return tensors


def _tensor_bytes(name: str, dims: list[int], t: GGMLType, path: Path) -> int:
    if dims[0] % t.block_size:
        raise FormatError(f"{path}: tensor {name!r} rows of {dims[0]} values are not whole {t.name} blocks of {t.block_size}",
                          fix="the file is damaged or badly written; re-convert it")
    return t.n_bytes(math.prod(dims))

"""Where pretraining text comes from: files, directories, JSONL, parquet, the stdlib.

A *source* is an iterable of documents (``str``), read lazily so a corpus
larger than RAM streams through::

    >>> docs = iter_documents([source_for("notes/", include=["*.md"]), StdlibSource()])
    >>> next(docs)[:20]
    '# My notes\\n\\nToday I'

Rules every source follows, so a corpus reads the same everywhere:

- Order is deterministic: directories are walked in sorted order.
- A text file is one document. A file over ``chunk_bytes`` is cut at line
  ends into pieces of about that size, each its own document, so one huge
  file never has to fit in memory.
- Files with a NUL byte in their first 8 KiB are binary and skipped
  (counted in ``source.skipped["binary"]``), like git does.
- Text must be UTF-8 (a leading BOM is dropped). A file that is not raises a
  one-line ``DataError`` naming it; ``errors="skip"`` skips it instead, counts
  it in ``source.skipped["undecodable"]`` and warns once with the count.
- Hidden files and directories (``.git``), ``__pycache__`` and symlinked
  directories are never read.

The embedded default corpus is ``StdlibSource``: the ``*.py`` files of the
Python standard library on this machine (code plus docstrings), without its
test suites and site-packages. It is real text and code, needs no download,
and is a few MB to a few tens of MB depending on the Python build.
"""

from __future__ import annotations

import fnmatch
import gzip
import json
import os
import sysconfig
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Literal

from llmkit.data.errors import DataError

Errors = Literal["strict", "skip"]

DEFAULT_CHUNK_BYTES = 4 << 20  # text files above this are split into line-aligned documents
SNIFF_BYTES = 8192  # a NUL byte in this prefix marks a file as binary
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
PARQUET_SUFFIXES = (".parquet",)
# Directory names the stdlib corpus never enters: test suites are mostly generated fixtures,
# site-packages is whatever the user installed (not "the stdlib" and not reproducible).
STDLIB_SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__",
                              "lib-dynload", "ensurepip"})
PYARROW_FIX = "run: pip install pyarrow"


class DataWarning(UserWarning):
    """Files skipped while reading a corpus (binary, or not UTF-8 with errors='skip')."""


def _check_errors(errors: str) -> None:
    if errors not in ("strict", "skip"):
        raise DataError(f"errors={errors!r} is not 'strict' or 'skip'",
                        "use 'strict' (stop at the first non-UTF-8 file) or 'skip' (skip and count them)")


class Source:
    """Base class: an iterable of documents plus counts of what was skipped."""

    def __init__(self, errors: Errors = "strict"):
        _check_errors(errors)
        self.errors = errors
        self.skipped = {"binary": 0, "undecodable": 0}
        self._first_bad: str | None = None

    def __iter__(self) -> Iterator[str]:
        self.skipped = {"binary": 0, "undecodable": 0}
        self._first_bad = None
        yield from self._documents()
        if self.skipped["undecodable"]:
            warnings.warn(f"{self}: skipped {self.skipped['undecodable']} non-UTF-8 file(s) or piece(s), "
                          f"first: {self._first_bad}", DataWarning, stacklevel=2)

    def _documents(self) -> Iterator[str]:
        raise NotImplementedError

    def describe(self) -> dict:
        """A JSON-able description, recorded in the data directory's index."""
        raise NotImplementedError

    def _undecodable(self, where: str, err: UnicodeDecodeError, base: int = 0) -> None:
        """Raise (errors='strict') or count (errors='skip') a piece of text that is not UTF-8."""
        if self.errors == "strict":
            bad = err.object[err.start]
            raise DataError(f"{where} is not UTF-8 text (byte 0x{bad:02x} at offset {base + err.start})",
                            "convert it to UTF-8, leave it out with --exclude, or pass errors='skip' (--errors skip)")
        self.skipped["undecodable"] += 1
        self._first_bad = self._first_bad or where


def _decode(data: bytes) -> str:
    return data.decode("utf-8-sig")  # -sig: drop a leading byte-order mark instead of keeping U+FEFF


class TextFile(Source):
    """One text file: one document, or line-aligned pieces of ~``chunk_bytes`` if it is larger."""

    def __init__(self, path: str | os.PathLike, errors: Errors = "strict", chunk_bytes: int = DEFAULT_CHUNK_BYTES):
        super().__init__(errors)
        self.path = Path(path)
        self.chunk_bytes = chunk_bytes

    def _documents(self) -> Iterator[str]:
        with _open_file(self.path) as f:
            first = f.read(self.chunk_bytes)
            if b"\x00" in first[:SNIFF_BYTES]:
                self.skipped["binary"] += 1
                return
            piece, offset = first, 0
            while piece:
                piece += f.readline()  # finish the line so pieces end at a line boundary (and a char boundary)
                try:
                    text = _decode(piece) if offset == 0 else piece.decode("utf-8")
                except UnicodeDecodeError as e:
                    self._undecodable(str(self.path), e, base=offset)  # with errors="skip": drop this piece
                    text = ""
                if text:
                    yield text
                offset += len(piece)
                piece = f.read(self.chunk_bytes)

    def describe(self) -> dict:
        return {"kind": "text", "path": str(self.path)}

    def __str__(self) -> str:
        return str(self.path)


class JsonlFile(Source):
    """JSON Lines (optionally gzipped): one document per line, taken from ``field``."""

    def __init__(self, path: str | os.PathLike, field: str = "text", errors: Errors = "strict"):
        super().__init__(errors)
        self.path = Path(path)
        self.field = field

    def _documents(self) -> Iterator[str]:
        opener = gzip.open if self.path.name.endswith(".gz") else open
        try:
            f = opener(self.path, "rb")
        except OSError as e:
            raise DataError(f"cannot read {str(self.path)!r}: {e.strerror or e}", "check the path") from None
        with f:
            for lineno, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                where = f"{self.path}:{lineno}"
                try:
                    line = _decode(raw) if lineno == 1 else raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    self._undecodable(where, e)
                    continue
                yield self._field(line, where)

    def _field(self, line: str, where: str) -> str:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where} is not valid JSON ({e.msg} at column {e.colno})",
                            "write one JSON object per line") from None
        if not isinstance(row, dict) or self.field not in row:
            keys = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise DataError(f"{where} has no field {self.field!r} (found: {keys})",
                            "choose the text field with --field NAME (field='NAME')")
        value = row[self.field]
        if value is None:
            return ""
        if not isinstance(value, str):
            raise DataError(f"{where}: field {self.field!r} is a {type(value).__name__}, not a string",
                            "point --field at a string field")
        return value

    def describe(self) -> dict:
        return {"kind": "jsonl", "path": str(self.path), "field": self.field}

    def __str__(self) -> str:
        return str(self.path)


class ParquetFile(Source):
    """A parquet file: one document per row of the string column ``column`` (needs pyarrow)."""

    def __init__(self, path: str | os.PathLike, column: str = "text", batch_rows: int = 1024):
        super().__init__("strict")  # parquet strings are UTF-8 by definition
        self.path = Path(path)
        self.column = column
        self.batch_rows = batch_rows

    def _documents(self) -> Iterator[str]:
        pq = _pyarrow_parquet()
        try:
            pf = pq.ParquetFile(self.path)
        except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ... for bad files
            raise DataError(f"cannot read {str(self.path)!r} as parquet ({type(e).__name__}: {e})",
                            "pass a valid .parquet file") from None
        names = pf.schema_arrow.names
        if self.column not in names:
            raise DataError(f"{self.path} has no column {self.column!r} (found: {names})",
                            "choose the text column with --field NAME (field='NAME')")
        for batch in pf.iter_batches(batch_size=self.batch_rows, columns=[self.column]):
            for value in batch.column(0).to_pylist():  # one row batch at a time, never the whole file
                if value is None:
                    continue
                if not isinstance(value, str):
                    raise DataError(f"{self.path}: column {self.column!r} holds {type(value).__name__}, not strings",
                                    "point --field at a string column")
                yield value

    def describe(self) -> dict:
        return {"kind": "parquet", "path": str(self.path), "field": self.column}

    def __str__(self) -> str:
        return str(self.path)


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading parquet needs pyarrow, which is not installed", PYARROW_FIX) from None
    return pq


class Directory(Source):
    """Every file under ``root`` (recursive, sorted), filtered by glob patterns.

    A pattern matches a file's path relative to ``root`` (``"docs/*.md"``;
    ``*`` also crosses ``/``) or its bare name (``"*.md"``). ``exclude``
    also prunes whole directories (``exclude=["build"]``). Files are read by
    kind: ``.jsonl``/``.ndjson`` (``.gz`` too) by ``field``, ``.parquet`` by
    column ``field``, everything else as text (binary files skipped).
    """

    def __init__(self, root: str | os.PathLike, include: Sequence[str] | None = None,
                 exclude: Sequence[str] | None = None, field: str = "text", errors: Errors = "strict",
                 skip_dirs: Iterable[str] = ("__pycache__",), chunk_bytes: int = DEFAULT_CHUNK_BYTES):
        super().__init__(errors)
        self.root = Path(root)
        self.include = list(include or [])
        self.exclude = list(exclude or [])
        self.field = field
        self.skip_dirs = frozenset(skip_dirs)
        self.chunk_bytes = chunk_bytes

    def files(self) -> Iterator[Path]:
        """The files this source reads: depth-first, entries of each directory in name order."""
        yield from self._walk(self.root, "")

    def _walk(self, directory: Path, rel_dir: str) -> Iterator[Path]:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as e:
            raise DataError(f"cannot list {str(directory)!r}: {e.strerror or e}", "check the path") from None
        for entry in entries:
            name = entry.name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if name.startswith(".") or _matches(rel, name, self.exclude):
                continue
            if entry.is_dir(follow_symlinks=False):  # a symlinked dir could loop back: not followed
                if name not in self.skip_dirs:
                    yield from self._walk(Path(entry.path), rel)
            elif entry.is_file() and (not self.include or _matches(rel, name, self.include)):
                yield Path(entry.path)

    def _documents(self) -> Iterator[str]:
        for path in self.files():
            child = file_source(path, field=self.field, errors=self.errors, chunk_bytes=self.chunk_bytes)
            yield from child._documents()  # not iter(child): its warning is folded into ours
            for key, n in child.skipped.items():
                self.skipped[key] += n
            self._first_bad = self._first_bad or child._first_bad

    def describe(self) -> dict:
        return {"kind": "directory", "path": str(self.root), "include": self.include, "exclude": self.exclude,
                "field": self.field}

    def __str__(self) -> str:
        return str(self.root)


def _matches(rel: str, name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def stdlib_root() -> Path:
    """The directory of the Python standard library on this machine."""
    return Path(sysconfig.get_paths()["stdlib"])


class StdlibSource(Source):
    """The embedded default corpus: the stdlib's ``*.py`` files, tests and site-packages left out.

    ``max_bytes`` caps the UTF-8 size of the corpus (the document that
    crosses the cap is cut at it), so small runs can take a fixed slice.
    Odd files that are not UTF-8 are skipped rather than failing the default.
    """

    def __init__(self, max_bytes: int | None = None, root: str | os.PathLike | None = None):
        super().__init__("skip")
        self.root = Path(root) if root is not None else stdlib_root()
        self.max_bytes = max_bytes
        self._dir = Directory(self.root, include=["*.py"], skip_dirs=STDLIB_SKIP_DIRS, errors="skip")

    def files(self) -> Iterator[Path]:
        return self._dir.files()

    def _documents(self) -> Iterator[str]:
        if not self.root.is_dir():
            raise DataError(f"the Python standard library was not found at {str(self.root)!r}",
                            "pass --input PATH with your own text instead")
        self._dir.skipped, self._dir._first_bad = self.skipped, None  # one shared counter, fresh every pass
        yield from cap_bytes(self._dir._documents(), self.max_bytes)
        self._first_bad = self._dir._first_bad

    def describe(self) -> dict:
        return {"kind": "stdlib", "path": str(self.root), "max_bytes": self.max_bytes}

    def __str__(self) -> str:
        return f"stdlib corpus {self.root}"


def _open_file(path: Path) -> IO[bytes]:
    try:
        return open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read {str(path)!r}: {e.strerror or e}", "check the path and its permissions") from None


def file_source(path: str | os.PathLike, field: str = "text", errors: Errors = "strict",
                chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Source:
    """The reader for one file, chosen by its name: JSONL, parquet, else text."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(JSONL_SUFFIXES):
        return JsonlFile(path, field=field, errors=errors)
    if name.endswith(PARQUET_SUFFIXES):
        return ParquetFile(path, column=field)
    return TextFile(path, errors=errors, chunk_bytes=chunk_bytes)


def source_for(path: str | os.PathLike, field: str = "text", include: Sequence[str] | None = None,
               exclude: Sequence[str] | None = None, errors: Errors = "strict") -> Source:
    """A source for a path a user typed: a directory (walked) or a single file."""
    p = Path(path).expanduser()
    if p.is_dir():
        return Directory(p, include=include, exclude=exclude, field=field, errors=errors)
    if p.is_file():
        return file_source(p, field=field, errors=errors)
    raise DataError(f"input {str(path)!r} does not exist", "pass an existing file or directory")


def cap_bytes(docs: Iterable[str], max_bytes: int | None) -> Iterator[str]:
    """Documents until ``max_bytes`` UTF-8 bytes; the one that crosses the cap is cut at it."""
    if max_bytes is None:
        yield from docs
        return
    if max_bytes <= 0:
        raise DataError(f"max_bytes={max_bytes} must be positive", "pass a size in bytes, e.g. 20000000")
    left = max_bytes
    for doc in docs:
        size = len(doc.encode("utf-8", "surrogatepass"))
        if size > left:
            # errors="ignore" drops a character split by the cut, so the piece stays valid text.
            doc = doc.encode("utf-8", "surrogatepass")[:left].decode("utf-8", "ignore")
            size = left
        if doc:
            yield doc
        left -= size
        if left <= 0:
            return


def iter_documents(sources: Source | Iterable[Source], max_bytes: int | None = None) -> Iterator[str]:
    """All non-empty documents of ``sources`` in order, capped at ``max_bytes``.

    Raises ``DataError`` if there are none: an empty corpus is always a mistake
    (a wrong path, a glob that matches nothing, a wrong JSONL field).
    """
    sources = [sources] if isinstance(sources, Source) else list(sources)
    if not sources:
        raise DataError("no corpus given", "pass --input PATH (or sources=[...]); omit it for the stdlib corpus")
    n = 0
    for doc in cap_bytes((d for s in sources for d in s if d), max_bytes):
        n += 1
        yield doc
    if n == 0:
        names = ", ".join(str(s) for s in sources)
        skipped = {k: sum(s.skipped[k] for s in sources) for k in ("binary", "undecodable")}
        raise DataError(f"the corpus is empty: no text documents in {names} (skipped: {skipped})",
                        "check the paths, the --include/--exclude globs and the JSONL --field")

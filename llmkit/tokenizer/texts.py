"""Training text for the tokenizer: files, directories, JSONL, and the embedded stdlib corpus.

    texts = iter_texts(["notes/", "chat.jsonl"], field="text")    # lazily, in sorted order
    corpus = stdlib_texts(max_bytes=20 << 20)                      # no --data: the Python stdlib

Every reader yields ``str`` documents lazily, so a corpus larger than memory
streams through ``train_bpe``. Files must be UTF-8 (a BOM is dropped); one that
is not raises a one-line TokenizerError naming the file and the byte offset. A
text file larger than ``chunk_chars`` is cut at line ends into several
documents (pre-split chunks then never cross those cuts, which changes a count
only where a run of blank lines straddles one).
"""

from __future__ import annotations

import fnmatch
import gzip
import json
import os
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from llmkit.core.errors import TokenizerError

# What a directory contributes unless --include says otherwise.
TEXT_GLOBS = ("*.txt", "*.md", "*.rst", "*.py", "*.c", "*.h", "*.cpp", "*.js", "*.ts", "*.java", "*.go", "*.rs",
              "*.html", "*.css", "*.tex", "*.json", "*.yaml", "*.yml", "*.toml", "*.sh")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "dist-packages"})
# The stdlib corpus leaves out test suites (mostly generated fixtures) unless asked.
STDLIB_TEST_DIRS = frozenset({"test", "tests", "idle_test"})
CHUNK_CHARS = 1 << 20


def _walk(root: Path, globs: Sequence[str], skip: frozenset[str]) -> Iterator[Path]:
    """Files under ``root`` matching any glob, in sorted order; hidden entries skipped."""
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip and not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and any(fnmatch.fnmatch(name, g) for g in globs):
                yield Path(dirpath) / name


def read_text(path: Path) -> str:
    """A file's text; TokenizerError naming the file if it is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{str(path)!r} is not UTF-8 (bad byte 0x{data[e.start]:02x} at offset {e.start})",
                             "convert it to UTF-8 or leave it out of --data") from None


def split_lines(text: str, chunk_chars: int = CHUNK_CHARS) -> Iterator[str]:
    """``text`` in pieces of about ``chunk_chars``, cut just after a newline when there is one."""
    start = 0
    while len(text) - start > chunk_chars:
        cut = text.rfind("\n", start, start + chunk_chars) + 1
        cut = cut if cut > start else start + chunk_chars
        yield text[start:cut]
        start = cut
    if start < len(text):
        yield text[start:]


def _jsonl(path: Path, field: str) -> Iterator[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise TokenizerError(f"{path}:{lineno} is not valid JSON ({e.msg})",
                                         "fix or drop that line") from None
                value = record.get(field) if isinstance(record, dict) else None
                if not isinstance(value, str):
                    raise TokenizerError(f"{path}:{lineno} has no string field {field!r}",
                                         "pass --field with the name of the text field")
                yield value
        except UnicodeDecodeError as e:
            raise TokenizerError(f"{str(path)!r} is not UTF-8 ({e.reason})", "convert it to UTF-8") from None


def iter_texts(paths: Iterable[str | os.PathLike], *, field: str = "text", include: Sequence[str] = (),
               chunk_chars: int = CHUNK_CHARS) -> Iterator[str]:
    """Documents from files, directories (recursive, ``include`` globs) and JSONL files."""
    globs = tuple(include) or TEXT_GLOBS
    for spec in paths:
        path = Path(spec).expanduser()
        if path.is_dir():
            files: Iterable[Path] = _walk(path, globs, SKIP_DIRS)
        elif path.is_file():
            files = [path]
        else:
            raise TokenizerError(f"training data {str(spec)!r} does not exist",
                                 "pass a text file, a directory or a .jsonl")
        for file in files:
            if file.name.endswith(JSONL_SUFFIXES):
                yield from _jsonl(file, field)
            else:
                yield from split_lines(read_text(file), chunk_chars)


def stdlib_files(include_tests: bool = False) -> Iterator[Path]:
    """The ``*.py`` files of this Python's standard library, in sorted order."""
    skip = SKIP_DIRS | {"lib-dynload", "ensurepip"} | (frozenset() if include_tests else STDLIB_TEST_DIRS)
    yield from _walk(Path(sysconfig.get_paths()["stdlib"]), ("*.py",), frozenset(skip))


def stdlib_texts(max_bytes: int | None = 20 << 20, include_tests: bool = False) -> Iterator[str]:
    """The embedded default corpus: stdlib source files (code + docstrings), up to ``max_bytes``.

    The few files that are not UTF-8 (encoding test fixtures) are skipped.
    """
    def read() -> Iterator[str]:
        for path in stdlib_files(include_tests):
            try:
                yield path.read_bytes().decode("utf-8-sig")
            except (UnicodeDecodeError, OSError):
                continue

    return take_bytes(read(), max_bytes)


def take_bytes(texts: Iterable[str], max_bytes: int | None) -> Iterator[str]:
    """The first ``max_bytes`` of UTF-8 across ``texts``; the last text is cut at a character boundary."""
    if max_bytes is None:
        yield from texts
        return
    left = max_bytes
    for text in texts:
        if left <= 0:
            return
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > left:
            text = text.encode("utf-8", "surrogatepass")[:left].decode("utf-8", "ignore")
        left -= size
        yield text

"""Files -> Documents (text + metadata): text, Markdown, HTML, PDF, JSON/JSONL and source code.

``walk`` finds files under a root with include/exclude globs and never follows a symlink out
of the root. ``load_file`` raises ``LoaderError`` for a file it cannot use (binary, empty,
unreadable PDF); ``load_tree`` turns those into a list of skipped files and carries on.
"""

from __future__ import annotations

import fnmatch
import html.parser
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from llmkit.core.errors import LLMKitError

TEXT_EXT = {".txt", ".text", ".rst", ".log", ".csv", ".tsv", ""}
MARKDOWN_EXT = {".md", ".markdown", ".mdx"}
HTML_EXT = {".html", ".htm", ".xhtml"}
CODE_EXT = {".py": "python", ".js": "javascript", ".ts": "typescript", ".go": "go", ".rs": "rust",
            ".c": "c", ".h": "c", ".cpp": "cpp", ".hpp": "cpp", ".java": "java", ".rb": "ruby",
            ".sh": "shell", ".sql": "sql", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".ini": "ini"}
JSON_EXT = {".json", ".jsonl", ".ndjson"}
PDF_EXT = {".pdf"}
SUPPORTED = TEXT_EXT | MARKDOWN_EXT | HTML_EXT | set(CODE_EXT) | JSON_EXT | PDF_EXT
DEFAULT_EXCLUDE = (".git/*", "*/.git/*", "*/__pycache__/*", "__pycache__/*", ".venv/*", "*/node_modules/*")


class LoaderError(LLMKitError):
    """A file that cannot be turned into text (binary, empty, unreadable)."""


@dataclass
class Document:
    text: str
    metadata: dict = field(default_factory=dict)  # source, title, kind, mtime, [page, record, language]


@dataclass
class LoadReport:
    documents: list[Document] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def _matches(rel: str, patterns: Sequence[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def walk(root: str | os.PathLike, include: Sequence[str] = (), exclude: Sequence[str] = (),
         skipped: list | None = None) -> Iterator[Path]:
    """Files under ``root`` (or ``root`` itself if a file), sorted, filtered by globs on the relative path.

    A symlink whose target resolves outside ``root`` is refused (reported in ``skipped``): ingesting
    a directory must not read files the user did not point at.
    """
    root = Path(root)
    if not root.exists():
        raise LoaderError(f"path {str(root)!r} does not exist", "pass a file or directory to ingest")
    if root.is_file():
        yield root
        return
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for d in list(dirnames):  # symlinked directories are not descended (os.walk), but say so
            if (Path(dirpath) / d).is_symlink():
                dirnames.remove(d)
                if skipped is not None:
                    skipped.append((str(Path(dirpath) / d), "symlinked directory not followed"))
        for fname in sorted(filenames):
            path = Path(dirpath) / fname
            rel = path.relative_to(root).as_posix()
            if _matches(rel, tuple(DEFAULT_EXCLUDE) + tuple(exclude)):
                continue
            if include and not _matches(rel, include):
                continue
            if not include and path.suffix.lower() not in SUPPORTED:
                continue
            if path.is_symlink() and not path.resolve().is_relative_to(real_root):
                if skipped is not None:
                    skipped.append((str(path), "symlink points outside the ingested root; refused"))
                continue
            yield path


def read_text(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise LoaderError(f"{path} looks binary (NUL bytes)", "exclude it with --exclude")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LoaderError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})",
                          "convert it to UTF-8 or exclude it") from None
    return text


class _HTMLText(html.parser.HTMLParser):
    """Main text of a page: drops script/style/nav/header/footer/aside; prefers <main>/<article>."""

    SKIP = {"script", "style", "nav", "header", "footer", "aside", "noscript", "template", "svg", "form"}
    BLOCK = {"p", "div", "section", "article", "main", "li", "br", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
             "pre", "blockquote", "table", "ul", "ol", "dd", "dt"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.skip_depth = 0
        self.main_depth = 0
        self.parts: list[str] = []
        self.main_parts: list[str] = []
        self.title = ""
        self._tag = ""

    def handle_starttag(self, tag, attrs):
        self._tag = tag
        if tag in self.SKIP:
            self.skip_depth += 1
        if tag in ("main", "article"):
            self.main_depth += 1
        if tag in self.BLOCK:
            self._emit("\n\n" if tag.startswith("h") or tag == "p" else "\n")
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._emit("#" * int(tag[1]) + " ")  # keep headings as Markdown so the header splitter sees them

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skip_depth:
            self.skip_depth -= 1
        if tag in ("main", "article") and self.main_depth:
            self.main_depth -= 1
        if tag in self.BLOCK:
            self._emit("\n")

    def handle_data(self, data):
        if self._tag == "title" and not self.title:
            self.title = data.strip()
            return
        if not self.skip_depth:
            self._emit(data)

    def _emit(self, s: str) -> None:
        self.parts.append(s)
        if self.main_depth:
            self.main_parts.append(s)


def html_text(source: str) -> tuple[str, str]:
    """(title, main text) of an HTML page."""
    p = _HTMLText()
    p.feed(source)
    p.close()
    body = "".join(p.main_parts if "".join(p.main_parts).strip() else p.parts)
    lines = [" ".join(ln.split()) for ln in body.splitlines()]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return p.title, text.strip()


def _markdown_title(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return None


def _json_text(record, fields: Sequence[str]) -> str:
    if not isinstance(record, dict):
        return record if isinstance(record, str) else json.dumps(record, ensure_ascii=False)
    if fields:
        return "\n".join(str(record[f]) for f in fields if record.get(f) not in (None, ""))
    return "\n".join(f"{k}: {v}" for k, v in record.items() if isinstance(v, (str, int, float)))


def _load_json(path: Path, base: dict, fields: Sequence[str]) -> list[Document]:
    text = read_text(path)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise LoaderError(f"{path}:{n} is not JSON ({e.msg})", "fix or exclude the file") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LoaderError(f"{path} is not JSON ({e.msg} at line {e.lineno})", "fix or exclude the file") from None
        records = data if isinstance(data, list) else [data]
    keep = {f for f in fields}
    docs = []
    for i, rec in enumerate(records):
        meta = dict(base, record=i)
        if isinstance(rec, dict):  # scalar non-text fields ride along as filterable metadata
            meta.update({k: v for k, v in rec.items() if k not in keep and isinstance(v, (int, float, bool))
                         and k not in meta})
        docs.append(Document(_json_text(rec, fields), meta))
    return docs


def _load_pdf(path: Path, base: dict) -> list[Document]:
    try:
        import pypdf
    except ImportError:
        raise LoaderError("PDF support needs pypdf", "pip install 'llmkit[rag]'") from None
    import logging

    log = logging.getLogger("pypdf")
    level = log.level
    log.setLevel(logging.ERROR)  # its warnings ("EOF marker not found") would break the one-line report
    try:
        reader = pypdf.PdfReader(str(path))
        title = (reader.metadata.title if reader.metadata else None) or base["title"]
        pages = [(i + 1, page.extract_text() or "") for i, page in enumerate(reader.pages)]
    except Exception as e:  # pypdf raises many kinds on a damaged file; all mean "unreadable"
        raise LoaderError(f"{path} is not a readable PDF ({type(e).__name__}: {e})", "repair or exclude it") from None
    finally:
        log.setLevel(level)
    return [Document(t, dict(base, title=str(title), page=n)) for n, t in pages if t.strip()]


def load_file(path: str | os.PathLike, root: str | os.PathLike | None = None,
              json_fields: Sequence[str] = ()) -> list[Document]:
    """One file -> its Documents (one per PDF page / JSON record, else one)."""
    path = Path(path)
    rel = path.relative_to(root).as_posix() if root and Path(root).is_dir() else path.name
    ext = path.suffix.lower()
    try:
        mtime = path.stat().st_mtime
    except OSError as e:
        raise LoaderError(f"{path} cannot be read ({e.strerror})", "check the path and permissions") from None
    base = {"source": rel, "title": path.stem, "mtime": mtime}
    if ext in PDF_EXT:
        docs = _load_pdf(path, dict(base, kind="pdf"))
    elif ext in JSON_EXT:
        docs = _load_json(path, dict(base, kind="json"), json_fields)
    else:
        text = read_text(path)
        if ext in HTML_EXT:
            title, text = html_text(text)
            docs = [Document(text, dict(base, kind="html", title=title or path.stem))]
        elif ext in MARKDOWN_EXT:
            docs = [Document(text, dict(base, kind="markdown", title=_markdown_title(text) or path.stem))]
        elif ext in CODE_EXT:
            docs = [Document(text, dict(base, kind="code", language=CODE_EXT[ext]))]
        else:
            docs = [Document(text, dict(base, kind="text"))]
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise LoaderError(f"{path} has no text", "empty files are skipped")
    return docs


def load_tree(root: str | os.PathLike, include: Sequence[str] = (), exclude: Sequence[str] = (),
              json_fields: Sequence[str] = ()) -> LoadReport:
    """Every usable file under root; bad files land in ``report.skipped`` with the reason."""
    report = LoadReport()
    for path in walk(root, include, exclude, report.skipped):
        try:
            report.documents.extend(load_file(path, root, json_fields))
        except LoaderError as e:
            report.skipped.append((str(path), e.message))
    return report

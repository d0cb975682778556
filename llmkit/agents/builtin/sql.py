"""Text-to-SQL over SQLite, read-only twice over.

    db = SQLDatabase(sample_db_path())
    db.schema()                          # CREATE statements + row counts: what goes into the prompt
    db.query("SELECT COUNT(*) FROM orders")   # -> a text table
    sql_tool(db)                         # the agent tool, schema in its description
    text_to_sql(llm, db, "How many orders are there?")   # one constrained SELECT, run, tabled

The connection is opened with the `mode=ro` URI, and an authorizer allows only reads
(SELECT, reading columns, functions): an INSERT, UPDATE, DELETE, DROP, ATTACH or PRAGMA
write is refused by SQLite before it runs, so the file is never modified. A progress
handler bounds each query's work, and results are cut to `max_rows`.
"""

from __future__ import annotations

import re
import sqlite3
import time
from importlib import resources
from pathlib import Path

from llmkit.agents.errors import AgentError, ToolCallError
from llmkit.agents.tools import Tool, tool
from llmkit.core.assets import cache_dir
from llmkit.core.fileio import atomic_write_file

SAMPLE_SQL = "sample_shop.sql"
_READ_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
SQL_REGEX = r"SELECT [^;\n]{1,400};?"  # what text_to_sql lets the model write: one SELECT, one line


def sample_db_path() -> Path:
    """The bundled shop database, built from the packaged .sql into the user cache on first use."""
    sql = resources.files("llmkit.agents").joinpath("data", SAMPLE_SQL).read_text(encoding="utf-8")
    path = cache_dir() / "agents" / "sample_shop.db"
    stamp = path.with_suffix(".sql-size")
    if path.is_file() and stamp.is_file() and stamp.read_text() == str(len(sql)):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{time.time_ns()}.tmp")
    try:
        with sqlite3.connect(tmp) as con:
            con.executescript(sql)
        con.close()
        tmp.replace(path)  # atomic: a reader never sees a half-built database
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write_file(stamp, str(len(sql)))
    return path


def _authorizer(action, arg1, arg2, db, trigger):
    return sqlite3.SQLITE_OK if action in _READ_ACTIONS else sqlite3.SQLITE_DENY


class SQLDatabase:
    def __init__(self, path: str | Path, max_rows: int = 50, max_steps: int = 5_000_000):
        self.path = Path(path)
        if not self.path.is_file():
            raise AgentError(f"SQLite database {str(self.path)!r} not found", "pass the path of an existing .db file")
        self.max_rows = max_rows
        self.con = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True, check_same_thread=False)
        try:
            self._tables = [r[0] for r in self.con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        except sqlite3.DatabaseError as e:
            raise AgentError(f"{str(self.path)!r} is not a SQLite database ({e})", "pass a .db file") from None
        self._schema = self._introspect()
        self.con.set_authorizer(_authorizer)  # from here on, reads only
        budget = {"left": max_steps}

        def progress() -> int:  # called every 1000 VM steps: non-zero aborts the statement
            budget["left"] -= 1000
            return int(budget["left"] < 0)

        self._budget, self._max_steps = budget, max_steps
        self.con.set_progress_handler(progress, 1000)

    def _introspect(self) -> str:
        parts = []
        for name in self._tables:
            (ddl,) = self.con.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()
            (n,) = self.con.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()
            parts.append(f"{ddl};  -- {n} rows")
        return "\n".join(parts)

    def tables(self) -> list[str]:
        return list(self._tables)

    def schema(self) -> str:
        return self._schema

    def query(self, sql: str) -> str:
        """Rows of one read-only statement as a text table; ToolCallError for anything else."""
        sql = sql.strip().strip("`").removeprefix("sql").strip()
        if not sql:
            raise ToolCallError("empty SQL statement")
        self._budget["left"] = self._max_steps
        try:
            cur = self.con.execute(sql)
            rows = cur.fetchmany(self.max_rows + 1)
        except sqlite3.DatabaseError as e:
            msg = str(e)
            if "not authorized" in msg or "readonly" in msg:
                raise ToolCallError("only SELECT queries are allowed: the database is read-only") from None
            if "interrupted" in msg:
                raise ToolCallError("query stopped: it did too much work (add a WHERE or LIMIT)") from None
            raise ToolCallError(f"SQL error: {msg}") from None
        except (sqlite3.Warning, ValueError) as e:  # e.g. two statements at once
            raise ToolCallError(f"SQL error: {e}") from None
        if cur.description is None:
            raise ToolCallError("the statement returned no rows; write a SELECT")
        return format_table([d[0] for d in cur.description], rows, self.max_rows)

    def close(self) -> None:
        self.con.close()


def format_table(columns: list[str], rows: list[tuple], max_rows: int) -> str:
    """A pipe table; floats without noise, at most max_rows rows (the cut is said).

    >>> print(format_table(["a", "b"], [(1, 2.50), (None, "x")], 10))
    a | b
    --+----
    1 | 2.5
      | x
    """
    def cell(v) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.10g}"
        return str(v)

    body = [[cell(v) for v in r] for r in rows[:max_rows]]
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(columns)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in body]
    if not body:
        lines.append("(no rows)")
    if len(rows) > max_rows:
        lines.append(f"... (more than {max_rows} rows; add LIMIT or aggregate)")
    return "\n".join(lines)


def sql_tool(db: SQLDatabase | str | Path, name: str = "sql") -> Tool:
    """A `sql` tool over one database; its description carries the schema (introspected, not typed in)."""
    db = db if isinstance(db, SQLDatabase) else SQLDatabase(db)

    def run_sql(query: str) -> str:
        return db.query(query)

    t = tool(run_sql, name=name, description="Run one read-only SQLite SELECT query and return the rows. "
                                             f"The database schema:\n{db.schema()}")
    t.parameters["properties"]["query"]["description"] = "one SQLite SELECT statement"
    if db.tables():  # a worked example on this very database, with its true result
        first = db.tables()[0]
        query = f"SELECT COUNT(*) FROM {first}"
        (n,) = db.con.execute(query).fetchone()
        t.example = {"question": f"How many rows does the {first} table have?", "arguments": {"query": query},
                     "result": db.query(query), "answer": f"The {first} table has {n} rows."}
    t.db = db  # the router and text_to_sql reach the database through the tool
    return t


SQL_PROMPT = """You write SQLite queries. Database schema:
{schema}

Write one SELECT query that answers the question. Only the query, nothing else."""


def text_to_sql(llm, db: SQLDatabase, question: str, max_tokens: int = 120) -> tuple[str, str]:
    """(the SQL the model wrote, its result table or the error): the schema goes into the prompt, the
    grammar makes the reply a single SELECT, the read-only connection runs it."""
    messages = [{"role": "system", "content": SQL_PROMPT.format(schema=db.schema())},
                {"role": "user", "content": question}]
    sql = llm.chat(messages, max_tokens=max_tokens, regex=SQL_REGEX).text.strip()
    sql = re.sub(r"\s+", " ", sql)
    try:
        return sql, db.query(sql)
    except ToolCallError as e:
        return sql, f"error: {e}"

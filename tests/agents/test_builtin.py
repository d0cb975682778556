"""Built-in tools: calculator, read-only SQL on the sample database, the retriever, the router."""

import hashlib
import json
import re

import pytest

from llmkit.agents.builtin.calculator import calculator, evaluate, format_number
from llmkit.agents.builtin.retriever import retriever_tool, sample_docs_collection
from llmkit.agents.builtin.sql import SQL_REGEX, SQLDatabase, format_table, sample_db_path, sql_tool, text_to_sql
from llmkit.agents.errors import AgentError, ToolCallError
from llmkit.agents.llm import ScriptedChat
from llmkit.agents.loop import Agent
from llmkit.agents.router import Router
from llmkit.agents.api import agent_route


@pytest.mark.parametrize("expr, want", [("17 * 23", 391), ("2 ** 10 - 24", 1000), ("(1 + 2) * 3 / 4", 2.25),
                                        ("sqrt(144) + abs(-3)", 15.0), ("7 // 2 + 7 % 2", 4), ("-3 ^ 2", -9), ("(-3) ^ 2", 9),
                                        ("round(pi, 2)", 3.14), ("factorial(5)", 120), ("max(3, 9, 4)", 9)])
def test_calculator_known_values(expr, want):
    assert evaluate(expr) == pytest.approx(want)


@pytest.mark.parametrize("expr, needle", [("__import__('os').system('ls')", "unsupported"),
                                          ("open('/etc/passwd')", "unsupported"), ("1/0", "division by zero"),
                                          ("9 ** 9 ** 9", "too large"), ("factorial(10**6)", "factorial"),
                                          ("2 +", "cannot parse"), ("x + 1", "name 'x'"),
                                          ("(1).__class__", "unsupported"), ("[1, 2]", "unsupported")])
def test_calculator_refuses_what_is_not_arithmetic(expr, needle):
    with pytest.raises(ToolCallError, match=re.escape(needle)):
        evaluate(expr)


def test_calculator_tool_formats_numbers():
    assert calculator.invoke({"expression": "0.1 + 0.2"}).content == "0.3"
    assert calculator.invoke({"expression": "10 / 4 * 2"}).content == "5"
    assert format_number(2 ** 70) == str(2 ** 70)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sample_database_is_built_once_and_introspected():
    path = sample_db_path()
    assert sample_db_path() == path and path.is_file()
    db = SQLDatabase(path)
    assert db.tables() == ["customers", "orders", "products"]
    assert "CREATE TABLE orders" in db.schema() and "-- 40 rows" in db.schema()
    assert db.query("SELECT COUNT(*) AS n FROM orders") == "n\n--\n40"
    t = sql_tool(db)
    assert "CREATE TABLE products" in t.description  # the schema reaches the prompt through the tool spec


WRITES = ["DELETE FROM orders", "DROP TABLE customers", "UPDATE products SET price = 0",
          "INSERT INTO orders VALUES (99, 1, 1, 1, '2024-01-01')", "CREATE TABLE x (a)",
          "ATTACH DATABASE 'other.db' AS o", "PRAGMA user_version = 7", "SELECT 1; DELETE FROM orders",
          "REPLACE INTO products VALUES (1, 'x', 'y', 0)", "VACUUM"]


@pytest.mark.parametrize("sql", WRITES)
def test_writes_are_refused_and_the_database_is_unchanged(sql):
    path = sample_db_path()
    before = _digest(path)
    r = sql_tool(SQLDatabase(path)).invoke({"query": sql})
    assert not r.ok and r.content.startswith("error:"), r
    assert _digest(path) == before
    assert SQLDatabase(path).query("SELECT COUNT(*) FROM orders").endswith("40")


def test_bad_sql_and_runaway_queries_are_observations():
    db = SQLDatabase(sample_db_path(), max_rows=5)
    with pytest.raises(ToolCallError, match="syntax error"):
        db.query("SELEC name FROM products")
    with pytest.raises(ToolCallError, match="no such column"):
        db.query("SELECT nope FROM products")
    with pytest.raises(ToolCallError, match="too much work"):
        db.query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c")
    assert "more than 5 rows" in db.query("SELECT * FROM orders")


def test_missing_or_bogus_database_is_a_typed_error(tmp_path):
    with pytest.raises(AgentError, match="not found"):
        SQLDatabase(tmp_path / "nope.db")
    bogus = tmp_path / "x.db"
    bogus.write_text("not sqlite at all, just text " * 20)
    with pytest.raises(AgentError, match="not a SQLite database"):
        SQLDatabase(bogus)


def test_format_table():
    assert format_table(["a"], [], 3) == "a\n-\n(no rows)"
    assert format_table(["x", "y"], [(1.0, None)], 3) == "x | y\n--+--\n1 |"


def test_text_to_sql_asks_for_one_select_with_the_schema():
    llm = ScriptedChat(["SELECT COUNT(*) FROM customers WHERE country = 'Portugal'"])
    db = SQLDatabase(sample_db_path())
    sql, table = text_to_sql(llm, db, "How many customers live in Portugal?")
    assert llm.calls[0]["regex"] == SQL_REGEX and "CREATE TABLE customers" in llm.calls[0]["messages"][0]["content"]
    assert table.endswith("\n2")
    assert re.fullmatch(SQL_REGEX, "SELECT 1;") and not re.fullmatch(SQL_REGEX, "DELETE FROM orders")


def test_sql_agent_end_to_end_with_a_write_attempt():
    path = sample_db_path()
    before = _digest(path)
    call = lambda q: "<tool_call>" + json.dumps({"name": "sql", "arguments": {"query": q}}) + "</tool_call>"  # noqa
    llm = ScriptedChat([call("DELETE FROM orders"), call("SELECT SUM(quantity) FROM orders"), "done"])
    r = Agent(llm, [sql_tool(path)], few_shot=False).run("How many items were ordered?")
    assert r.answer == "done" and "read-only" in r.tool_results[0].content and r.tool_results[1].ok
    assert _digest(path) == before


@pytest.fixture(scope="module")
def docs_db(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("rag") / "rag.db")
    return db, sample_docs_collection(db)


def test_retriever_tool_over_the_sample_docs(docs_db):
    db, name = docs_db
    t = retriever_tool(name, db, k=3)
    out = t.invoke({"query": "How long is the Orbit Lamp warranty?"})
    assert out.ok and out.content.startswith("[1] orbit-lamp.md") and "30 months" in out.content
    with pytest.raises(AgentError, match="no RAG collection"):
        retriever_tool("nope", db)


def test_router_routes_and_self_checks_relevance(docs_db):
    db, name = docs_db
    sql_db = SQLDatabase(sample_db_path())
    retriever = retriever_tool(name, db, k=2)
    llm = ScriptedChat(["sql", "SELECT COUNT(*) FROM products", "There are 10 products."])
    out = Router(llm, sql_db, retriever).ask("How many products are there?")
    assert out.route == "sql" and out.table.endswith("10") and out.answer == "There are 10 products."
    assert llm.calls[0]["regex"] == "(sql|docs|direct)"

    def grade(msgs):
        return "yes" if "30 months" in msgs[0]["content"] else "no"

    llm = ScriptedChat(["docs", grade, grade, grade, "30 months."])
    out = Router(llm, sql_db, retriever).ask("How long is the Orbit Lamp warranty?")
    assert out.route == "docs" and sum(out.relevant) == 1 and len(out.relevant) == 3 and not out.fell_back
    assert "30 months" in llm.calls[-1]["messages"][0]["content"] and llm.calls[1]["regex"] == "(yes|no)"

    llm = ScriptedChat(["docs", "no", "no", "no", "I do not know."])
    out = Router(llm, sql_db, retriever).ask("Who won the 1998 World Cup?")
    assert out.fell_back and out.answer == "I do not know."
    assert "Passage" not in llm.calls[-1]["messages"][0]["content"]  # answered without the rejected context


def test_agent_route_builds_the_router_from_source_specs(docs_db, tmp_path):
    db, _ = docs_db
    llm = ScriptedChat(["docs", "yes", "no", "30 months."])
    out = agent_route("How long is the Orbit Lamp warranty?", "rag", k=2, rag_db=db, llm=llm,
                      trace=tmp_path / "t.jsonl", transcript=tmp_path / "t.txt")
    assert out.route == "docs" and out.answer == "30 months." and out.relevant == [True, False]
    assert llm.calls[0]["regex"] == "(docs|direct)"  # no database given: sql is not an option
    assert "Orbit Lamp" in llm.calls[0]["messages"][0]["content"]  # the route prompt names the sample products
    events = [json.loads(line)["type"] for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert "route" in events and "retrieve" in events and (tmp_path / "t.txt").read_text()
    llm = ScriptedChat(["sql", "SELECT COUNT(*) FROM orders", "There are 40 orders."])
    out = agent_route("How many orders are there?", f"sql:{sample_db_path()}", llm=llm)
    assert out.route == "sql" and out.table.endswith("40")
    for bad in ("web", "sql,sql"):
        with pytest.raises(AgentError, match="route source"):
            agent_route("q", bad, llm=ScriptedChat([]))
    with pytest.raises(AgentError, match="k=0"):
        agent_route("q", "sql", k=0, llm=ScriptedChat([]))

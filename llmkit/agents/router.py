"""A router: answer from the database (SQL), from the documents (RAG), or directly.

    router = Router(llm, db=SQLDatabase(sample_db_path()), retriever=retriever_tool("docs"))
    out = router.ask("How many orders are there?")     # out.route == "sql", out.sql, out.answer

The route is one constrained choice (the model can only write `sql`, `docs` or `direct`).
Adaptive-RAG style, retrieved passages are self-checked before use: the model grades each
one yes/no for relevance (again a constrained choice), irrelevant ones are dropped, and
with none left the router answers directly and says the documents did not help, instead
of grounding an answer in passages about something else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmkit.agents.builtin.retriever import format_hits
from llmkit.agents.builtin.sql import SQLDatabase, text_to_sql
from llmkit.agents.trace import Trace

ROUTE_PROMPT = """Choose how to answer the question.
sql: the question asks for counts, totals, lists or facts stored in the database. Tables: {tables}.
docs: the question is about the products described in the documents: {docs}.
direct: general knowledge or conversation; neither the database nor the documents help.
Reply with one word: sql, docs or direct."""
# few-shot demonstrations of the choice: a small model picks up a labelled example far better than a rule
ROUTE_EXAMPLES = [("How many rows have a price above 100?", "sql"),
                  ("What does the manual say about charging the device?", "docs"),
                  ("Who wrote Hamlet?", "direct"),
                  ("Which customer placed the most recent order?", "sql"),
                  ("How do I reset it to factory settings?", "docs")]
GRADE_PROMPT = """Does the passage help answer the question? Reply yes or no.

Passage: {passage}

Question: {question}"""
ANSWER_SQL = """Answer the question in one short sentence using the query result.

Question: {question}
SQL: {sql}
Result:
{table}"""
ANSWER_DOCS = """Answer the question in one short sentence using only these passages.

{passages}

Question: {question}"""


@dataclass
class RouteResult:
    route: str  # sql | docs | direct
    answer: str
    sql: str | None = None
    table: str | None = None
    passages: list[str] = field(default_factory=list)
    relevant: list[bool] = field(default_factory=list)
    fell_back: bool = False  # docs were chosen but no passage passed the relevance check
    trace: Trace = field(default_factory=Trace)


def _choice_regex(options: list[str]) -> str:
    return "(" + "|".join(options) + ")"


class Router:
    def __init__(self, llm, db: SQLDatabase | None = None, retriever=None, docs_topic: str = "the document collection",
                 k: int = 3, max_tokens: int = 96):
        self.llm, self.db, self.retriever = llm, db, retriever
        self.docs_topic, self.k, self.max_tokens = docs_topic, k, max_tokens

    def options(self) -> list[str]:
        return ["sql"] * (self.db is not None) + ["docs"] * (self.retriever is not None) + ["direct"]

    def route(self, question: str, trace: Trace | None = None) -> str:
        options = self.options()
        if len(options) == 1:
            return options[0]
        tables = ", ".join(self.db.tables()) if self.db is not None else "(none)"
        system = ROUTE_PROMPT.format(tables=tables, docs=self.docs_topic)
        demos = [turn for q, a in ROUTE_EXAMPLES if a in options
                 for turn in ({"role": "user", "content": q}, {"role": "assistant", "content": a})]
        reply = self.llm.chat([{"role": "system", "content": system}, *demos, {"role": "user", "content": question}],
                              max_tokens=4, regex=_choice_regex(options))
        choice = reply.text.strip()
        if trace is not None:
            trace.add("route", choice=choice, options=options)
        return choice if choice in options else "direct"

    def relevant(self, question: str, passage: str) -> bool:
        reply = self.llm.chat([{"role": "user", "content": GRADE_PROMPT.format(passage=passage, question=question)}],
                              max_tokens=2, regex="(yes|no)")
        return reply.text.strip() == "yes"

    def ask(self, question: str) -> RouteResult:
        trace = Trace()
        trace.add("message", role="user", content=question)
        route = self.route(question, trace)
        if route == "sql":
            out = self._sql(question, trace)
        elif route == "docs":
            out = self._docs(question, trace)
        else:
            out = RouteResult("direct", self._direct(question), trace=trace)
        out.trace = trace
        trace.add("final", answer=out.answer, stop_reason=out.route, steps=0, prompt_tokens=0, completion_tokens=0)
        return out

    def _say(self, prompt: str) -> str:
        return self.llm.chat([{"role": "user", "content": prompt}], max_tokens=self.max_tokens).text.strip()

    def _direct(self, question: str) -> str:
        return self.llm.chat([{"role": "user", "content": question}], max_tokens=self.max_tokens).text.strip()

    def _sql(self, question: str, trace: Trace) -> RouteResult:
        sql, table = text_to_sql(self.llm, self.db, question)
        trace.add("tool_call", name="sql", arguments={"query": sql})
        trace.add("tool_result", name="sql", arguments={"query": sql}, ok=not table.startswith("error:"),
                  content=table, seconds=0.0)
        answer = self._say(ANSWER_SQL.format(question=question, sql=sql, table=table))
        return RouteResult("sql", answer, sql=sql, table=table)

    def _docs(self, question: str, trace: Trace) -> RouteResult:
        hits = self.retriever.search(question, self.k)
        texts = [" ".join(h.text.split()) for h in hits]
        grades = [self.relevant(question, t) for t in texts]
        trace.add("retrieve", passages=texts, relevant=grades)
        kept = [h for h, g in zip(hits, grades) if g]
        if not kept:  # adaptive: do not ground the answer in passages about something else
            answer = self._direct(question)
            return RouteResult("docs", answer, passages=texts, relevant=grades, fell_back=True)
        answer = self._say(ANSWER_DOCS.format(passages=format_hits(kept), question=question))
        return RouteResult("docs", answer, passages=texts, relevant=grades)
